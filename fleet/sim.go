package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/token"
)

// profile is the one profile of every host.
const profile = "fleet"

// stallLimit bounds, in real time, every wait of the simulation on the
// caches' goroutines. Reaching it is a failure, never a way to
// synchronise.
const stallLimit = time.Minute

// maxHorizon bounds a run whose Horizon is decided by convergence.
const maxHorizon = 48 * time.Hour

// maxProblems is how many violations a Result describes.
const maxProblems = 10

// errCheckFetch answers a Fetch started by the invariant check's Get,
// which must never fetch.
var errCheckFetch = &oauth.Error{StatusCode: 503, Description: "fetch during the invariant check", Retryable: true}

// host is one simulated tokd.
type host struct {
	idx   int
	cache *cache.Cache
	skew  time.Duration // the cache's ExpirySkew

	// Guarded by sim.mu: they change on the caches' goroutines.
	timers   int    // pending timers armed through this host's clock
	fetching bool   // a Fetch is waiting for the endpoint's answer
	outcome  string // FetchResult.Outcome of the last fetch

	// Owned by the simulation's goroutine.
	issued     *token.Token // the last token the endpoint gave this host
	held       *token.Token // the token the host holds, as far as the simulation knows
	heldServed time.Time    // held is served before this time
	failing    bool         // the host's last attempt failed
	last       outcome      // the endpoint's last answer to this host
	answered   bool         // last is set
}

// request is one Fetch waiting for the endpoint.
type request struct {
	h     *host
	reply chan reply
}

// sim is one run in progress.
type sim struct {
	cfg      Config
	clock    *clocktest.Clock
	endpoint endpoint
	hosts    []*host
	ctx      context.Context // ends every cache's Run
	cancel   context.CancelFunc
	runs     sync.WaitGroup // the caches' Run calls

	mu       sync.Mutex // guards the fields below and host.timers, fetching, outcome
	cond     *sync.Cond
	arrivals []*request // Fetch calls waiting for the endpoint
	observed int        // Observe calls so far
	timers   int        // pending timers of all hosts
	checking bool       // the invariant check is calling Get
	stalled  bool       // the watchdog fired
	problems []string   // violations seen on the caches' goroutines

	// Owned by the simulation's goroutine.
	starts      int   // hosts not started yet: each has a timer
	err         error // a failure inside a timer callback
	expected    int   // Fetch calls the current step started
	observeWant int   // Observe calls expected so far
	holding     int   // hosts that hold or held a token
	failing     int   // hosts whose last attempt failed
	log         []record
	res         *Result
}

// record is one request as the endpoint saw it.
type record struct {
	at      time.Duration // since the start
	outcome outcome
	class   class // the host's state when it sent the request
}

// hostClock is a host's view of the shared fake clock: it counts the
// host's pending timers, so that the simulation knows whether a firing
// timer armed the next one or started a fetch.
type hostClock struct {
	s *sim
	h *host
}

func (c hostClock) Now() time.Time { return c.s.clock.Now() }

func (c hostClock) AfterFunc(d time.Duration, f func()) cache.Timer {
	// Arm first, count second: the simulation may move the clock as soon as
	// it sees the count, and the timer must be armed against the time the
	// cache read.
	t := &hostTimer{c: c, inner: c.s.clock.AfterFunc(d, func() { c.s.fire(c.h, f) })}
	c.s.mu.Lock()
	c.h.timers++
	c.s.timers++
	c.s.mu.Unlock()
	c.s.cond.Broadcast()
	return t
}

// hostTimer is a timer armed through a hostClock.
type hostTimer struct {
	c     hostClock
	inner cache.Timer
}

func (t *hostTimer) Stop() bool {
	if !t.inner.Stop() {
		return false
	}
	t.c.s.mu.Lock()
	t.c.h.timers--
	t.c.s.timers--
	t.c.s.mu.Unlock()
	return true
}

// fetcher is a host's Fetcher: it hands the request to the simulation and
// waits for the endpoint's answer.
type fetcher struct {
	s *sim
	h *host
}

func (f fetcher) Fetch(_ context.Context, _ string) (*token.Token, error) {
	s := f.s
	s.mu.Lock()
	if s.checking {
		s.problem("host %d: Get fetched during the invariant check", f.h.idx)
		s.observeWant++ // read by the simulation only after the check
		s.mu.Unlock()
		return nil, errCheckFetch
	}
	r := &request{h: f.h, reply: make(chan reply, 1)}
	f.h.fetching = true
	s.arrivals = append(s.arrivals, r)
	s.mu.Unlock()
	s.cond.Broadcast()
	rep := <-r.reply
	return rep.tok, rep.err
}

// problem records a violation; s.mu is held.
func (s *sim) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// Run simulates one fleet and returns what it measured. It fails only when
// the simulation itself breaks down (a cache fetched or armed timers other
// than as described in the package comment); broken invariants of the
// cache are counted in the Result.
func Run(cfg Config) (*Result, error) {
	wallStart := time.Now()
	s, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.run(); err != nil {
		return nil, err
	}
	s.res.Wall = time.Since(wallStart)
	return s.res, nil
}

// newSim sets up the hosts of a run, their caches not yet running: each
// starts (cache.Run) when the clock reaches its start time.
func newSim(cfg Config) (*sim, error) {
	if cfg.Hosts <= 0 {
		return nil, errors.New("fleet: no hosts")
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = time.Hour
	}
	s := &sim{
		cfg:   cfg,
		clock: clocktest.New(Start),
		endpoint: endpoint{
			limiter:          emulator.Limiter{Limit: cfg.Limit},
			lifetime:         cfg.Lifetime,
			outageFrom:       Start.Add(cfg.OutageAt),
			outageTo:         Start.Add(cfg.OutageAt + cfg.OutageFor),
			outageRetryAfter: cfg.OutageRetryAfter,
		},
		res: &Result{Config: cfg, Converged: -1, Recovered: -1},
	}
	s.cond = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	// The simulation's own draws (ages, start times) come from a stream
	// apart from the hosts' jitter.
	rnd := rand.New(rand.NewPCG(cfg.Seed, 1<<63))
	s.hosts = make([]*host, cfg.Hosts)
	for i := range s.hosts {
		h := &host{idx: i}
		s.hosts[i] = h
		opts := cache.Options{StartJitter: cfg.StartJitter}
		if cfg.Tune != nil {
			cfg.Tune(i, &opts)
		}
		opts.Clock = hostClock{s: s, h: h}
		opts.Rand = rand.New(rand.NewPCG(cfg.Seed, uint64(i))).Float64
		opts.Observe = func(r cache.FetchResult) {
			s.mu.Lock()
			h.outcome = r.Outcome
			s.observed++
			s.mu.Unlock()
			s.cond.Broadcast()
		}
		h.skew = cmp.Or(opts.ExpirySkew, cache.DefaultExpirySkew)
		h.cache = cache.New(opts)
		h.cache.SetProfiles([]cache.Profile{{Name: profile, Fingerprint: "fleet", Fetcher: fetcher{s: s, h: h}, CanFetch: true}})
		if cfg.Warm {
			age := time.Duration(rnd.Float64() * float64(cfg.Lifetime*17/30))
			t := &token.Token{
				AccessToken: fmt.Sprintf("host%d.stored", i),
				TokenType:   "Bearer",
				IssuedAt:    Start.Add(-age),
				Expiry:      Start.Add(-age + cfg.Lifetime),
			}
			h.cache.Restore([]cache.Record{{Profile: profile, TokenType: t.TokenType, AccessToken: t.AccessToken,
				IssuedAt: t.IssuedAt, Expiry: t.Expiry, Fingerprint: "fleet"}})
			s.hold(h, t)
			s.holding++
		}
		var delay time.Duration
		if cfg.StartSpread > 0 {
			delay = time.Duration(rnd.Float64() * float64(cfg.StartSpread))
		}
		s.starts++
		s.clock.AfterFunc(delay, func() { s.start(h) })
	}
	return s, nil
}

// close stops every cache and waits for them.
func (s *sim) close() {
	s.cancel()
	s.runs.Wait()
}

// run moves the clock step by step until the horizon, then closes the
// accounts.
func (s *sim) run() error {
	cfg := s.cfg
	horizon := cfg.Horizon
	if horizon <= 0 {
		horizon = -1 // decided once the fleet has converged and recovered
	}
	outageEnd := cfg.OutageAt + cfg.OutageFor
	var lastSweep time.Duration
	for {
		next, ok := s.clock.NextDeadline()
		if !ok {
			return errors.New("fleet: no timer pending: the hosts stopped scheduling")
		}
		at := next.Sub(Start)
		if horizon < 0 && s.res.Converged >= 0 && (cfg.OutageFor == 0 || s.res.Recovered >= 0) {
			horizon = max(s.res.Converged, outageEnd+s.res.Recovered) + cfg.Lifetime
		}
		if horizon >= 0 && at > horizon {
			break
		}
		if horizon < 0 && at > maxHorizon {
			return fmt.Errorf("fleet: the fleet neither converged nor recovered in %v", maxHorizon)
		}
		if err := s.step(next); err != nil {
			return err
		}
		now := s.clock.Now().Sub(Start)
		if s.res.Converged < 0 && s.holding == cfg.Hosts {
			s.res.Converged = now
		}
		if cfg.OutageFor > 0 && s.res.Recovered < 0 && now >= outageEnd && s.failing == 0 && s.holding == cfg.Hosts {
			s.res.Recovered = now - outageEnd
		}
		if cfg.SweepEvery <= 0 || now-lastSweep >= cfg.SweepEvery {
			lastSweep = now
			if err := s.check(s.hosts); err != nil {
				return err
			}
		}
	}
	s.finish(horizon)
	return nil
}

// start runs host h's cache and returns once Run has scheduled the
// profile: armed a timer, or started a fetch that the current step then
// answers.
func (s *sim) start(h *host) {
	s.starts--
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		_ = h.cache.Run(s.ctx)
	}()
	var fetched bool
	err := s.wait(fmt.Sprintf("host %d to schedule its profile", h.idx), func() bool {
		fetched = h.fetching && h.timers == 0
		return h.timers > 0 || h.fetching
	})
	if err != nil && s.err == nil {
		s.err = err
	}
	if fetched {
		s.expected++
	}
}

// fire runs f, the function of a timer that host h armed, and counts the
// fetch it started, if any: when f returns the host has either armed its
// next timer or started a fetch that waits for this step's answer.
func (s *sim) fire(h *host, f func()) {
	s.mu.Lock()
	h.timers--
	s.timers--
	s.mu.Unlock()
	f()
	s.mu.Lock()
	fetched := h.timers == 0
	s.mu.Unlock()
	if fetched {
		s.expected++
	}
}

// wait waits until cond, evaluated with s.mu held, holds, or fails the
// run after stallLimit of real time.
func (s *sim) wait(what string, cond func() bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cond() {
		return nil
	}
	s.stalled = false
	t := time.AfterFunc(stallLimit, func() {
		s.mu.Lock()
		s.stalled = true
		s.mu.Unlock()
		s.cond.Broadcast()
	})
	defer t.Stop()
	for !cond() {
		if s.stalled {
			return fmt.Errorf("fleet: at %v, still waiting for %s after %v of real time",
				s.clock.Now().Sub(Start), what, stallLimit)
		}
		s.cond.Wait()
	}
	return nil
}

// step advances the clock to next, runs the timers due then, answers the
// fetches they started in host order and waits until every host has
// applied its answer.
func (s *sim) step(next time.Time) error {
	s.expected = 0
	s.clock.AdvanceTo(next)
	s.res.Steps++
	if s.err != nil {
		return s.err
	}
	if err := s.wait(fmt.Sprintf("%d fetches to start", s.expected),
		func() bool { return len(s.arrivals) >= s.expected }); err != nil {
		return err
	}
	s.mu.Lock()
	batch := s.arrivals
	s.arrivals = nil
	s.mu.Unlock()
	if len(batch) != s.expected {
		return fmt.Errorf("fleet: at %v, %d fetches started where %d were expected",
			next.Sub(Start), len(batch), s.expected)
	}
	if len(batch) == 0 {
		return nil
	}
	// Fetches of one instant arrive in goroutine order: answer them in host
	// order, so that who gets through the rate limit is reproducible.
	sortRequests(batch)
	now := s.clock.Now()
	for _, r := range batch {
		rep := s.endpoint.answer(now, r.h.idx)
		s.log = append(s.log, record{at: now.Sub(Start), outcome: rep.outcome, class: s.classify(r.h, now)})
		r.h.last, r.h.answered = rep.outcome, true
		r.h.issued = rep.tok
		s.mu.Lock()
		r.h.fetching = false
		s.mu.Unlock()
		r.reply <- rep
	}
	s.observeWant += len(batch)
	if err := s.wait("fetch results to be applied", func() bool { return s.observed == s.observeWant }); err != nil {
		return err
	}
	// Every timer on the clock is a host's next attempt or a start.
	s.mu.Lock()
	armed := s.timers
	s.mu.Unlock()
	if pending := s.clock.Pending(); pending != armed+s.starts {
		return fmt.Errorf("fleet: at %v, %d timers pending where the hosts armed %d and %d are yet to start",
			now.Sub(Start), pending, armed, s.starts)
	}
	hosts := make([]*host, len(batch))
	for i, r := range batch {
		h := r.h
		hosts[i] = h
		s.mu.Lock()
		outcome, timers := h.outcome, h.timers
		s.mu.Unlock()
		if timers != 1 {
			s.violation("host %d at %v: %d timers pending after a fetch, want 1", h.idx, now.Sub(Start), timers)
		}
		switch outcome {
		case "ok":
			if h.held == nil {
				s.holding++
			}
			s.hold(h, h.issued)
			if h.failing {
				h.failing = false
				s.failing--
			}
		case "retryable_error", "permanent_error":
			if !h.failing {
				h.failing = true
				s.failing++
			}
		default:
			s.violation("host %d at %v: fetch outcome %q", h.idx, now.Sub(Start), outcome)
		}
	}
	if s.cfg.SweepEvery > 0 {
		return s.check(hosts)
	}
	return nil
}

// classify returns the state of host h as it sends a request at now.
func (s *sim) classify(h *host, now time.Time) class {
	var c class
	switch left := h.heldServed.Sub(now); {
	case h.held == nil || left <= 0:
		c.held = heldNone
	case left < s.ceiling():
		c.held = heldShort
	default:
		c.held = heldLong
	}
	c.after429 = h.answered && h.last == refused
	return c
}

// ceiling returns the hosts' fleet retry ceiling, C in the cache's
// package comment, for the default RateLimitBackoff: the start jitter, at
// least cache.DefaultRateLimitBackoff. Only the classes of RecoveryClasses
// use it.
func (s *sim) ceiling() time.Duration {
	return max(s.cfg.StartJitter, cache.DefaultRateLimitBackoff)
}

// hold records that h holds t from now on, and the gap since its previous
// token stopped being served, if any.
func (s *sim) hold(h *host, t *token.Token) {
	now := s.clock.Now()
	if h.held != nil && !now.Before(h.heldServed) {
		s.lapse(h.heldServed, now)
	}
	h.held = t
	l := t.Expiry.Sub(t.IssuedAt)
	h.heldServed = t.Expiry.Add(-min(h.skew, l/10))
}

// lapse records that a host went without a served token from from to to.
func (s *sim) lapse(from, to time.Time) {
	d := to.Sub(from)
	s.res.Lapsed++
	s.res.LapsedFor = max(s.res.LapsedFor, d)
	s.res.LapsedHostMinutes += d.Minutes()
	if s.cfg.OutageFor > 0 && !from.Before(s.endpoint.outageTo) {
		s.res.LapsedAfterOutage++
	}
}

// check calls Get on every host of hosts whose held token is still
// served: Get must return that token, from memory.
func (s *sim) check(hosts []*host) error {
	now := s.clock.Now()
	s.mu.Lock()
	s.checking = true
	s.mu.Unlock()
	for _, h := range hosts {
		if h.held == nil || !now.Before(h.heldServed) {
			continue
		}
		s.res.Checks++
		tok, err := h.cache.Get(s.ctx, profile)
		switch {
		case err != nil:
			s.violation("host %d at %v: Get failed while its token, served until %v, is valid: %v",
				h.idx, now.Sub(Start), h.heldServed.Sub(Start), err)
		case tok.AccessToken != h.held.AccessToken:
			s.violation("host %d at %v: Get returned %s, want the held %s", h.idx, now.Sub(Start), tok.AccessToken, h.held.AccessToken)
		case !tok.Valid(now):
			s.violation("host %d at %v: Get returned a token that expired at %v", h.idx, now.Sub(Start), tok.Expiry.Sub(Start))
		}
	}
	s.mu.Lock()
	s.checking = false
	s.mu.Unlock()
	// A Get that fetched (a violation, recorded by the Fetcher) has an
	// Observe call coming.
	return s.wait("fetches of the invariant check", func() bool { return s.observed == s.observeWant })
}

// violation counts a broken invariant and describes the first few.
func (s *sim) violation(format string, args ...any) {
	s.res.Violations++
	if len(s.res.Problems) < maxProblems {
		s.res.Problems = append(s.res.Problems, fmt.Sprintf(format, args...))
	}
}

// finish closes the accounts at end, since the start.
func (s *sim) finish(end time.Duration) {
	s.mu.Lock()
	for _, p := range s.problems {
		s.res.Violations++
		if len(s.res.Problems) < maxProblems {
			s.res.Problems = append(s.res.Problems, p)
		}
	}
	s.mu.Unlock()
	endTime := Start.Add(end)
	for _, h := range s.hosts {
		if h.held != nil && h.heldServed.Before(endTime) {
			s.lapse(h.heldServed, endTime)
		}
	}
	s.res.log = s.log
	s.res.Total = phase(s.log, "total", 0, end, true)
	cfg := s.cfg
	switch {
	case cfg.OutageFor > 0:
		oEnd := cfg.OutageAt + cfg.OutageFor
		s.res.Phases = []Phase{
			phase(s.log, "before", 0, cfg.OutageAt, false),
			phase(s.log, "outage", cfg.OutageAt, oEnd, false),
			phase(s.log, "after", oEnd, end, true),
		}
	case s.res.Converged >= 0:
		// The start includes the instant the last host got its token.
		s.res.Phases = []Phase{
			phase(s.log, "start", 0, s.res.Converged+1, false),
			phase(s.log, "steady", s.res.Converged+1, end, true),
		}
	default:
		s.res.Phases = []Phase{phase(s.log, "start", 0, end, true)}
	}
}

// phase summarises the records in [from, to), or [from, to] when last.
func phase(log []record, name string, from, to time.Duration, last bool) Phase {
	p := Phase{Name: name, From: from, To: to}
	var in []time.Duration
	for _, r := range log {
		if r.at < from || r.at > to || (r.at == to && !last) {
			continue
		}
		in = append(in, r.at)
		p.Requests++
		switch r.outcome {
		case issued:
			p.Issued++
		case refused:
			p.Refused++
		case unavailable:
			p.Unavailable++
		}
	}
	p.PeakPerSecond = peak(in, time.Second)
	p.PeakPerMinute = peak(in, time.Minute)
	return p
}

// peak returns the most times of ts, sorted, in any window (t-w, t].
func peak(ts []time.Duration, w time.Duration) int {
	best, i := 0, 0
	for j, t := range ts {
		for ts[i] <= t-w {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// sortRequests sorts rs by host index.
func sortRequests(rs []*request) {
	slices.SortFunc(rs, func(a, b *request) int { return cmp.Compare(a.h.idx, b.h.idx) })
}
