package cache_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/oauth"
)

// t0 is when every test starts.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// secretMark is in every access and refresh token the fakes make; it must
// never reach a log line or a Status.
const secretMark = "secret-"

// watchdog bounds every wait of a test on the cache; reaching it is a
// failure, not a way of synchronising.
const watchdog = 10 * time.Second

// harness runs one cache on a fake clock and observes it through the test
// hooks.
type harness struct {
	t     *testing.T
	clk   *clocktest.Clock
	c     *cache.Cache
	store *fakeStore
	logs  *syncBuffer

	mu      sync.Mutex // guards the counters below
	cond    *sync.Cond
	started int // fetches started
	done    int // fetch goroutines finished
	waiting int // Gets and Refreshes that started waiting

	stopRun func()
}

type harnessOption func(*cache.Options)

func withSeed(seed uint64) harnessOption {
	return func(o *cache.Options) { o.Rand = rand.New(rand.NewPCG(seed, 99)).Float64 }
}

func withoutStore() harnessOption { return func(o *cache.Options) { o.Store = nil } }

// withStore makes the cache persist into s instead of h.store.
func withStore(s cache.Store) harnessOption { return func(o *cache.Options) { o.Store = s } }

// withObserve sets Options.Observe.
func withObserve(f func(cache.FetchResult)) harnessOption {
	return func(o *cache.Options) { o.Observe = f }
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		clk:   clocktest.New(t0),
		store: newFakeStore(),
		logs:  &syncBuffer{},
	}
	h.cond = sync.NewCond(&h.mu)
	o := cache.Options{
		Clock:  h.clk,
		Store:  h.store,
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rand:   rand.New(rand.NewPCG(1, 2)).Float64,
	}
	for _, opt := range opts {
		opt(&o)
	}
	h.c = cache.New(o)
	count := func(p *int) func(string) {
		return func(string) {
			h.mu.Lock()
			*p++
			h.mu.Unlock()
			h.cond.Broadcast()
		}
	}
	cache.SetTestHooks(h.c, cache.TestHooks{
		FetchStarted: count(&h.started),
		FetchDone:    count(&h.done),
		Waiting:      count(&h.waiting),
	})
	t.Cleanup(func() {
		if h.stopRun != nil {
			h.stopRun()
		}
		if strings.Contains(h.logs.String(), secretMark) {
			t.Errorf("token material in the log:\n%s", h.logs.String())
		}
		for _, s := range h.c.Status() {
			if strings.Contains(fmt.Sprintf("%+v", s), secretMark) {
				t.Errorf("token material in Status: %+v", s)
			}
		}
	})
	return h
}

// waitFor waits until cond, evaluated with h.mu held, is true.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	expired := false
	timer := time.AfterFunc(watchdog, func() {
		h.mu.Lock()
		expired = true
		h.mu.Unlock()
		h.cond.Broadcast()
	})
	defer timer.Stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	for !cond() {
		if expired {
			h.t.Fatalf("still waiting for %s after %v", what, watchdog)
		}
		h.cond.Wait()
	}
}

// settle waits until every fetch started so far has finished, its result
// applied, logged and persisted.
func (h *harness) settle() {
	h.t.Helper()
	h.waitFor("fetches to finish", func() bool { return h.done == h.started })
}

// waitWaiting waits until n callers in total have started waiting for a fetch.
func (h *harness) waitWaiting(n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d waiting callers", n), func() bool { return h.waiting >= n })
}

// fetchesStarted returns the number of fetches started so far.
func (h *harness) fetchesStarted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started
}

// run starts Run and waits until it has scheduled every profile and the
// fetches it started have finished. Cleanup stops it.
func (h *harness) run() {
	h.t.Helper()
	h.start()
	h.settle()
}

// start starts Run and waits until it has scheduled every profile.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- h.c.Run(ctx) }()
	h.stopRun = func() {
		h.stopRun = nil
		cancel()
		select {
		case err := <-result:
			if err != nil {
				h.t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(watchdog):
			h.t.Errorf("Run did not return %v after its context ended", watchdog)
		}
	}
	select {
	case <-h.c.Started():
	case <-time.After(watchdog):
		h.t.Fatalf("Run had not planned its fetches after %v", watchdog)
	}
}

// advance moves the fake clock forward by d one timer deadline at a time,
// letting the fetches each deadline starts finish before moving on, so that
// every fetch sees the time of its own deadline.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.advanceTo(h.clk.Now().Add(d))
}

func (h *harness) advanceTo(end time.Time) {
	h.t.Helper()
	for {
		h.settle()
		next, ok := h.clk.NextDeadline()
		if !ok || next.After(end) {
			break
		}
		h.clk.AdvanceTo(next)
	}
	h.clk.AdvanceTo(end)
	h.settle()
}

// advanceToNextTimer moves the clock to the next timer deadline and lets
// the fetches it starts finish; it fails the test when no timer is armed.
func (h *harness) advanceToNextTimer() time.Time {
	h.t.Helper()
	h.settle()
	next, ok := h.clk.NextDeadline()
	if !ok {
		h.t.Fatal("no timer armed")
	}
	h.clk.AdvanceTo(next)
	h.settle()
	return next
}

func (h *harness) status(name string) cache.ProfileStatus {
	h.t.Helper()
	for _, s := range h.c.Status() {
		if s.Name == name {
			return s
		}
	}
	h.t.Fatalf("no status for profile %s", name)
	return cache.ProfileStatus{}
}

func (h *harness) mustGet(name string) *oauth.Token {
	h.t.Helper()
	tok, err := h.c.Get(context.Background(), name)
	if err != nil {
		h.t.Fatalf("Get(%s): %v", name, err)
	}
	if !tok.Valid(h.clk.Now()) {
		h.t.Fatalf("Get(%s) returned a token that expired at %v; now %v", name, tok.Expiry, h.clk.Now())
	}
	if tok.RefreshToken != "" {
		h.t.Fatalf("Get(%s) handed out the refresh token", name)
	}
	return tok
}

// fakeFetcher makes tokens of a fixed lifetime on the fake clock. Its
// answers can be scripted per call, and held back until the test releases
// them.
type fakeFetcher struct {
	name     string
	clk      *clocktest.Clock
	lifetime time.Duration

	mu       sync.Mutex // guards the fields below
	calls    int
	refresh  []string            // refresh token passed to each call
	fail     func(n int) error   // error for call n (1-based), nil for success
	gate     chan struct{}       // if non-nil, each call waits for it or for its ctx
	lastCtxs []context.Context   // context of each call
	tokens   map[int]oauth.Token // token returned by call n
}

func newFetcher(clk *clocktest.Clock, name string, lifetime time.Duration) *fakeFetcher {
	return &fakeFetcher{name: name, clk: clk, lifetime: lifetime, tokens: make(map[int]oauth.Token)}
}

func (f *fakeFetcher) Fetch(ctx context.Context, refreshToken string) (*oauth.Token, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.refresh = append(f.refresh, refreshToken)
	f.lastCtxs = append(f.lastCtxs, ctx)
	gate, fail := f.gate, f.fail
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(n); err != nil {
			return nil, err
		}
	}
	now := f.clk.Now()
	tok := oauth.Token{
		AccessToken:  fmt.Sprintf("%saccess-%s-%d", secretMark, f.name, n),
		TokenType:    "Bearer",
		RefreshToken: fmt.Sprintf("%srefresh-%s-%d", secretMark, f.name, n),
		Scope:        "urn:opc:idm:__myscopes__",
		IssuedAt:     now,
		Expiry:       now.Add(f.lifetime),
	}
	f.mu.Lock()
	f.tokens[n] = tok
	f.mu.Unlock()
	return &tok, nil
}

func (f *fakeFetcher) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeFetcher) refreshTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refresh...)
}

func (f *fakeFetcher) setFail(fail func(n int) error) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

// hold makes the following calls wait until the returned function is called.
func (f *fakeFetcher) hold() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(gate)
		})
	}
}

func (f *fakeFetcher) profile(fingerprint string) cache.Profile {
	return cache.Profile{Name: f.name, Fingerprint: fingerprint, Fetcher: f, CanFetch: true}
}

// fakeStore records what the cache persists.
type fakeStore struct {
	mu      sync.Mutex // guards the fields below
	ops     []string   // "put NAME" and "delete NAME", in order
	records map[string]cache.Record
	putErr  error
}

func newFakeStore() *fakeStore { return &fakeStore{records: make(map[string]cache.Record)} }

func (s *fakeStore) Put(rec cache.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, "put "+rec.Profile)
	if s.putErr != nil {
		return s.putErr
	}
	s.records[rec.Profile] = rec
	return nil
}

func (s *fakeStore) Delete(profile string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, "delete "+profile)
	delete(s.records, profile)
	return nil
}

func (s *fakeStore) setPutErr(err error) {
	s.mu.Lock()
	s.putErr = err
	s.mu.Unlock()
}

func (s *fakeStore) opsLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ops...)
}

func (s *fakeStore) record(profile string) (cache.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[profile]
	return r, ok
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of subs.
func (b *syncBuffer) lines(subs ...string) []string {
	var out []string
	for line := range strings.Lines(b.String()) {
		match := true
		for _, s := range subs {
			match = match && strings.Contains(line, s)
		}
		if match {
			out = append(out, line)
		}
	}
	return out
}
