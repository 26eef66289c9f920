package storage_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage/storetest"
)

// BenchmarkDeliverParallel measures durable delivery (blob fsync + Raft
// commit + FSM apply) with many concurrent deliveries, the SMTP intake path.
func BenchmarkDeliverParallel(b *testing.B) {
	s := storetest.New(b)
	a := storetest.AddAccount(b, s, "bench@example.com", "pw")
	var n atomic.Int64
	body := strings.Repeat("x", 1000)
	b.SetParallelism(25) // 50 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			blob, err := s.PutBlob(strings.NewReader(body + string(rune(i))))
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.Deliver(ctx, blob, []uint64{a.ID}, time.Now()); err != nil {
				b.Error(err)
			}
			blob.Release()
		}
	})
}
