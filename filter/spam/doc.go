// Package spam is Tandem's own Bayesian spam classifier.
//
// It owns three things:
//
//   - the tokenizer (Tokenize): a bounded walk over a message's header fields,
//     MIME parts (transfer encodings and charsets decoded to UTF-8), HTML
//     (reduced to text plus tag hints), URLs (split into host parts) and CJK
//     text (segmented into character bigrams);
//   - the combiner (Classifier): Robinson's per-token probability with
//     Fisher's chi-square combination, as bogofilter and SpamBayes do, with an
//     "unsure" band between a ham and a spam cutoff;
//   - the learned state: token counts behind the small TokenStore interface.
//     Training never writes a store directly: it produces a Delta, a
//     deterministic change that the storage layer replicates (as a Raft
//     command) and then applies with MemStore.Apply on every node, so a
//     failover never loses training. Snapshots are a compact versioned
//     binary format (WriteSnapshot, ReadSnapshot, OpenSnapshot).
//
// The package must not write anything itself, talk to the network or keep
// package-level state: the caller decides where verdicts and deltas go.
package spam
