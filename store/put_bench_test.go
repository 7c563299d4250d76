package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tokd/tokd/store"
)

func openBenchStore(b *testing.B) *store.Store {
	b.Helper()
	s, err := store.Open(b.TempDir(), store.Options{Key: testKey(1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkPut measures one Put at a time: the latency of a lone Put, a
// fsynced transaction each.
func BenchmarkPut(b *testing.B) {
	s := openBenchStore(b)
	i := 0
	for b.Loop() {
		if err := s.Put(sampleRecord(fmt.Sprintf("profile-%03d", i%1000))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPutConcurrent measures Puts from 32 goroutines per CPU, as a
// burst of refreshes makes them: the time per Put, amortised.
func BenchmarkPutConcurrent(b *testing.B) {
	s := openBenchStore(b)
	var n atomic.Int64
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.Put(sampleRecord(fmt.Sprintf("profile-%03d", i%1000))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
