package cache

// TestHooks observe a cache from the tests of package cache_test. Each
// function may be nil; fetchStarted runs with the cache's lock held and
// must not call the cache.
type TestHooks struct {
	FetchStarted func(profile string)
	FetchDone    func(profile string)
	Waiting      func(profile string)
}

// SetTestHooks installs h on c. Call it before c is used.
func SetTestHooks(c *Cache, h TestHooks) {
	c.hooks = hooks{
		fetchStarted: h.FetchStarted,
		fetchDone:    h.FetchDone,
		waiting:      h.Waiting,
	}
}
