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
package dnsd
