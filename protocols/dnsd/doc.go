// Package dnsd is Tandem's built-in authoritative DNS server (SPEC D1).
//
// It owns the zone model (Record, Zone, DefaultZone), the validation of records an
// admin enters, and the wire server on UDP and TCP. It answers only for the zones a
// ZoneSource hosts: it never resolves, never forwards and never sends a query of its
// own (RFC 5358), so names outside the hosted zones get REFUSED.
//
// The zones themselves are replicated state owned by storage/; this package reads
// them through the small ZoneSource interface and never writes them. On every zone
// version the server compiles an immutable answer table (pre-packed responses for
// every name and type) and swaps it in atomically, so queries are answered without
// locks and, for the common case, without building a dns.Msg.
//
// Hostile-input rules (RELIABILITY #33–#35): ANY gets an RFC 8482 minimal answer over
// UDP, UDP answers respect the EDNS buffer (capped at 1232 bytes) and set TC when the
// answer does not fit, responses per client network are rate limited with slip, AXFR
// is served only to configured prefixes, and malformed packets get FORMERR or are
// dropped; every serving goroutine recovers from panics and counts them.
//
// KVZones (kvsource.go) is the ZoneSource of a node: the zones are derived from
// replicated state, so every node serves the same answers. KV namespaces:
//
//	dns.zones  "DOMAIN" → ZoneDoc (JSON): the admin's records of the domain, the
//	           SOA serial last written and a hash of the derived records it was
//	           written for. Owned here; written with IfVersion by AddRecord,
//	           DeleteRecords and the leader's Reconcile.
//	dkim.keys  "DOMAIN/SELECTOR" → key (JSON), owned by filter/dkimsign; keys in
//	           state published, active or retired are served as TXT records.
//
// Each hosted domain's zone is its derived records (SOA, NS, mail host A/AAAA,
// MX, SPF, DMARC, DKIM: see DefaultZone) with the admin's records laid over
// them: an admin RRset replaces the derived one of the same name and type (for
// TXT, of the same "v=" tag). The serial is computed by the writer before the
// KV write (NextSerial of the served serial), never in the FSM, and the served
// serial is a pure function of replicated state, so all nodes agree on it.
//
// CheckRecords and ResolverLookup serve the admin's check of a domain hosted
// elsewhere ("tandem domain dns NAME --check"); they ask a resolver and are not
// part of the authoritative server.
package dnsd
