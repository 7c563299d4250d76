package cache_test

import (
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/store"
)

// storeAdapter is how the daemon hands a *store.Store to the cache. It
// compiles only while cache.Record and store.Record have the same fields in
// the same order, which keeps the two from drifting apart.
type storeAdapter struct{ s *store.Store }

func (a storeAdapter) Put(r cache.Record) error    { return a.s.Put(store.Record(r)) }
func (a storeAdapter) Delete(profile string) error { return a.s.Delete(profile) }

var _ cache.Store = storeAdapter{}
