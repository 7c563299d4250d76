package cache_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/cache"
)

// The tests of this file cover how persists overlap: the Puts of different
// profiles run together, so that the store can commit them in one
// transaction, while a record that Forget deletes is never written back
// and a profile's newer token is never overwritten by an older one.

// storeWait bounds how long gatedStore waits for other Puts; it is below
// the harness's watchdog, so that a cache that serialises its Puts fails
// the test with the store's message rather than the harness's.
const storeWait = 5 * time.Second

// gatedStore is a fakeStore whose Puts can be held inside Put, and which
// records how many Puts were inside at once.
type gatedStore struct {
	*fakeStore

	mu     sync.Mutex // guards the fields below
	cond   *sync.Cond
	inside map[string]int // Puts in progress, by profile
	total  int            // Puts in progress
	most   int            // the most Puts in progress at once
	same   []string       // profiles that had two Puts in progress at once
	// hold, if set, returns a channel that the Put of rec waits for.
	hold func(rec cache.Record) <-chan struct{}
	// quorum, if above 1, makes every Put wait until that many Puts have
	// been inside at once, or storeWait has passed; after one Put gave up,
	// the others do not wait.
	quorum  int
	missed  int // Puts that gave up waiting for the quorum
	entered int // Puts that have entered
}

func newGatedStore() *gatedStore {
	s := &gatedStore{fakeStore: newFakeStore(), inside: make(map[string]int)}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *gatedStore) Put(rec cache.Record) error {
	s.mu.Lock()
	s.inside[rec.Profile]++
	if s.inside[rec.Profile] > 1 {
		s.same = append(s.same, rec.Profile)
	}
	s.total++
	s.most = max(s.most, s.total)
	s.entered++
	var gate <-chan struct{}
	if s.hold != nil {
		gate = s.hold(rec)
	}
	s.cond.Broadcast()
	if s.quorum > 1 && s.missed == 0 {
		expired := false
		timer := time.AfterFunc(storeWait, func() {
			s.mu.Lock()
			expired = true
			s.mu.Unlock()
			s.cond.Broadcast()
		})
		for s.most < s.quorum && !expired {
			s.cond.Wait()
		}
		timer.Stop()
		if s.most < s.quorum {
			s.missed++
		}
	}
	s.mu.Unlock()

	if gate != nil {
		<-gate
	}
	err := s.fakeStore.Put(rec)

	s.mu.Lock()
	s.inside[rec.Profile]--
	s.total--
	s.mu.Unlock()
	return err
}

// waitEntered waits until n Puts in total have entered Put.
func (s *gatedStore) waitEntered(t *testing.T, n int) {
	t.Helper()
	expired := false
	timer := time.AfterFunc(watchdog, func() {
		s.mu.Lock()
		expired = true
		s.mu.Unlock()
		s.cond.Broadcast()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.entered < n {
		if expired {
			t.Fatalf("%d Puts entered after %v, want %d", s.entered, watchdog, n)
		}
		s.cond.Wait()
	}
}

// receive returns what ch delivers, failing the test after the watchdog.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(watchdog):
		t.Fatalf("no %s after %v", what, watchdog)
		panic("unreachable")
	}
}

// getAsync runs Get in a goroutine and delivers its token or error.
func getAsync(h *harness, name string) <-chan string {
	got := make(chan string, 1)
	go func() {
		tok, err := h.c.Get(context.Background(), name)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- tok.AccessToken
	}()
	return got
}

// TestPersistsOfProfilesOverlap: when many profiles' fetches finish
// together, their Puts are in the store at the same time, which lets
// store.Put commit them in one transaction.
func TestPersistsOfProfilesOverlap(t *testing.T) {
	const n = 20
	st := newGatedStore()
	st.quorum = n
	h := newHarness(t, withStore(st))
	var ps []cache.Profile
	for i := range n {
		ps = append(ps, newFetcher(h.clk, fmt.Sprintf("p%02d", i), time.Hour).profile("fp"))
	}
	h.c.SetProfiles(ps)
	h.run() // starts n fetches at once and waits for them and their persists

	st.mu.Lock()
	most, missed, same := st.most, st.missed, st.same
	st.mu.Unlock()
	if most != n || missed != 0 {
		t.Errorf("at most %d Puts in the store at once (%d gave up waiting), want all %d", most, missed, n)
	}
	if len(same) != 0 {
		t.Errorf("two Puts of one profile at once: %q", same)
	}
	for _, p := range ps {
		if rec, ok := st.record(p.Name); !ok || rec.AccessToken != "secret-access-"+p.Name+"-1" {
			t.Errorf("record of %s = %+v, %v; want its token", p.Name, rec, ok)
		}
	}
}

// TestForgetDuringPersistDeletesTheRecord: a Forget that comes while a
// fetch's Put is in the store waits for that Put, then deletes the record;
// one that comes after the fetch installed its token but before the Put
// leaves that persist nothing to write. Either way the record is gone.
func TestForgetDuringPersistDeletesTheRecord(t *testing.T) {
	t.Run("Put in progress", func(t *testing.T) {
		st := newGatedStore()
		gate := make(chan struct{})
		st.hold = func(cache.Record) <-chan struct{} { return gate }
		h := newHarness(t, withStore(st))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})

		got := getAsync(h, "ci")
		st.waitEntered(t, 1)
		forgot := make(chan error, 1)
		go func() { forgot <- h.c.Forget("ci") }()
		close(gate)
		if err := receive(t, "Forget", forgot); err != nil {
			t.Fatal(err)
		}
		if tok := receive(t, "Get", got); tok != "secret-access-ci-1" {
			t.Errorf("Get = %s, want the fetched token", tok)
		}
		h.settle()
		if rec, ok := st.record("ci"); ok {
			t.Errorf("record %+v still stored after Forget", rec)
		}
		if ops := st.opsLog(); !cmp.Equal(ops, []string{"put ci", "delete ci"}) {
			t.Errorf("store operations = %q, want the Put, then the Delete", ops)
		}
	})

	t.Run("before the Put", func(t *testing.T) {
		st := newGatedStore()
		observed := make(chan struct{})
		resume := make(chan struct{})
		h := newHarness(t, withStore(st), withObserve(func(cache.FetchResult) {
			close(observed)
			<-resume
		}))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})

		got := getAsync(h, "ci")
		receive(t, "fetch result", observed) // installed, not yet persisted
		if err := h.c.Forget("ci"); err != nil {
			t.Fatal(err)
		}
		close(resume)
		receive(t, "Get", got)
		h.settle()
		if rec, ok := st.record("ci"); ok {
			t.Errorf("record %+v written back after Forget", rec)
		}
		if ops := st.opsLog(); !cmp.Equal(ops, []string{"delete ci"}) {
			t.Errorf("store operations = %q, want only the Delete", ops)
		}
	})
}

// TestPersistsOfOneProfileKeepTheNewerToken: a Refresh that fetches a new
// token while the previous token's Put is still in the store does not
// overwrite the newer record with the older one, nor put both at once.
func TestPersistsOfOneProfileKeepTheNewerToken(t *testing.T) {
	st := newGatedStore()
	gate := make(chan struct{})
	st.hold = func(rec cache.Record) <-chan struct{} {
		if rec.AccessToken == "secret-access-ci-1" {
			return gate
		}
		return nil
	}
	var mu sync.Mutex
	results := 0
	second := make(chan struct{})
	h := newHarness(t, withStore(st), withObserve(func(cache.FetchResult) {
		mu.Lock()
		defer mu.Unlock()
		if results++; results == 2 {
			close(second)
		}
	}))
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})

	got := getAsync(h, "ci")
	st.waitEntered(t, 1) // the first token's Put is held in the store
	refreshed := make(chan string, 1)
	go func() {
		tok, err := h.c.Refresh(context.Background(), "ci")
		if err != nil {
			refreshed <- "error: " + err.Error()
			return
		}
		refreshed <- tok.AccessToken
	}()
	receive(t, "second fetch result", second) // the second token is installed, its persist next
	close(gate)
	if tok := receive(t, "Get", got); tok != "secret-access-ci-1" {
		t.Errorf("Get = %s, want the first token", tok)
	}
	if tok := receive(t, "Refresh", refreshed); tok != "secret-access-ci-2" {
		t.Errorf("Refresh = %s, want the second token", tok)
	}
	h.settle()
	if rec, _ := st.record("ci"); rec.AccessToken != "secret-access-ci-2" {
		t.Errorf("stored %s, want the newer token", rec.AccessToken)
	}
	st.mu.Lock()
	same := st.same
	st.mu.Unlock()
	if len(same) != 0 {
		t.Errorf("two Puts of one profile at once: %q", same)
	}
	if ops := st.opsLog(); !cmp.Equal(ops, []string{"put ci", "put ci"}) {
		t.Errorf("store operations = %q, want both tokens put, in order", ops)
	}
}
