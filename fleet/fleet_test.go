package fleet

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/token"
)

// The CI versions of the fleet scenarios: 200 hosts against the published
// limits scaled by the same factor as the fleet (200/1,000 of Free,
// 200/10,000 of Premium), so that the floor (hosts / limit per minute)
// stays that of the full runs. go run ./fleet/cmd/fleetsim runs the full
// ones; docs/FLEET.md has their figures.
const smallHosts = 200

// smallFree is 1,000 hosts on a Free domain (10/s, 150/min) scaled to 200
// hosts.
var smallFree = scaled(emulator.DomainFree, 1000)

// scaled returns the limit of domain type typ scaled from a fleet of
// hosts to smallHosts, the per-second limit rounded up.
func scaled(typ emulator.DomainType, hosts int) emulator.RateLimit {
	l := emulator.DomainRateLimit(typ)
	return emulator.RateLimit{
		PerSecond: (l.PerSecond*smallHosts + hosts - 1) / hosts,
		PerMinute: l.PerMinute * smallHosts / hosts,
	}
}

func withRetryAfter(l emulator.RateLimit, ra bool) emulator.RateLimit {
	l.RetryAfter = ra
	return l
}

// run runs cfg and fails the test on a broken simulation or a broken
// serving invariant.
func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Violations != 0 {
		t.Errorf("%d violations of the serving invariant in %d checks:\n%s", r.Violations, r.Checks, strings.Join(r.Problems, "\n"))
	}
	if r.Checks == 0 {
		t.Error("the invariant check never ran")
	}
	return r
}

func logResult(t *testing.T, r *Result) {
	t.Helper()
	var b strings.Builder
	if r.Config.OutageFor > 0 {
		_ = WriteOutageTable(&b, []*Result{r})
	} else {
		_ = WriteStartTable(&b, []*Result{r})
	}
	t.Log("\n" + b.String())
}

// TestColdStart restarts every host of the two fleets at once
// with an empty cache and the start jitter docs/FLEET.md sizes
// (StartJitterFor: 1.3 times the floor), and holds each run to the
// issue's targets: every host served within 1.5 times the floor, under 5%
// of requests refused until then, and the serving invariant. The fleets
// are full size: scaled down, the per-second limit shrinks with them and
// the random draws' bursts overflow it far more often than at full size
// (200 Premium hosts at 2/s: 20 to 24% refused).
func TestColdStart(t *testing.T) {
	tests := []struct {
		name       string
		hosts      int
		typ        emulator.DomainType
		retryAfter bool
	}{
		{"free 1000", 1000, emulator.DomainFree, false},
		{"free 1000 retry-after", 1000, emulator.DomainFree, true},
		{"premium 10000", 10000, emulator.DomainPremium, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			limit := withRetryAfter(emulator.DomainRateLimit(tt.typ), tt.retryAfter)
			cfg := Config{Name: tt.name, Hosts: tt.hosts, Limit: limit, Seed: 1, SweepEvery: 10 * time.Second,
				StartJitter: StartJitterFor(tt.hosts, limit.PerMinute)}
			// Until the convergence target, plus a minute: the first refresh
			// wave, 34 minutes on, would double the run.
			cfg.Horizon = time.Duration(MaxConvergence*float64(cfg.Floor())) + time.Minute
			r := run(t, cfg)
			logResult(t, r)
			for _, target := range r.Targets() {
				if !target.Met {
					t.Errorf("target %s missed: %s", target.Name, target.Detail)
				}
			}
			// The endpoint never lets more through than the limit, whatever
			// the hosts do.
			if issued := r.Phase("start").Issued; issued != tt.hosts {
				t.Errorf("%d tokens issued until convergence, want one per host (%d)", issued, tt.hosts)
			}
		})
	}
}

// TestColdStartWithoutJitter shows what the start jitter is for: hosts
// that all fetch in the same instant are refused at least
// (N - per-second limit) / (2N - per-second limit) of their requests,
// since the first instant refuses all but the per-second limit and each
// host needs one request that succeeds. That is about half, whatever the
// backoff does afterwards.
func TestColdStartWithoutJitter(t *testing.T) {
	r := run(t, Config{Name: "free, no jitter", Hosts: smallHosts, Limit: smallFree, Seed: 1})
	logResult(t, r)
	n, perSecond := float64(smallHosts), float64(smallFree.PerSecond)
	if got, bound := r.Phase("start").RefusedShare(), (n-perSecond)/(2*n-perSecond); got < bound {
		t.Errorf("refused %.1f%% of requests, below the bound of %.1f%%: the hosts did not start together", 100*got, 100*bound)
	}
	if r.Converged < 0 {
		t.Error("some hosts never obtained a token")
	}
}

// TestColdStartSpread starts the hosts' caches uniformly over 1.3 times
// the floor, as hosts booted over a while would, without a start jitter:
// the targets are met as with the jitter.
func TestColdStartSpread(t *testing.T) {
	cfg := Config{Name: "free 1000 spread", Hosts: 1000, Limit: emulator.DomainRateLimit(emulator.DomainFree),
		Seed: 1, SweepEvery: time.Second}
	cfg.StartSpread = StartJitterFor(cfg.Hosts, cfg.Limit.PerMinute)
	cfg.Horizon = time.Duration(MaxConvergence*float64(cfg.Floor())) + time.Minute
	r := run(t, cfg)
	logResult(t, r)
	for _, target := range r.Targets() {
		if !target.Met {
			t.Errorf("target %s missed: %s", target.Name, target.Detail)
		}
	}
}

// TestOutage takes the identity domain down for 30 minutes while every
// host of the two fleets holds a token part-way through its life,
// with the start jitter docs/FLEET.md sizes (it also spreads the retries,
// package cache, "Failures"): no host may lose a token that is still
// valid (the serving invariant), nothing gets through during the outage,
// every host is served again within 1.5 times the floor of the outage's
// end (the cold start's target, read for the recovery), at most 1% of the
// tokens run out after the domain is back, and the share of requests
// refused until recovery stays under 5%. Free runs at full size; scaled to
// 200 hosts, the per-second limit binds (200 Premium hosts at 2/s).
func TestOutage(t *testing.T) {
	for _, tt := range []struct {
		name       string
		hosts      int
		typ        emulator.DomainType
		retryAfter bool
		// maxRefused is the bound on the share refused until recovery:
		// MaxRefusedShare where the target is met.
		maxRefused float64
		// maxRecovery bounds Recovered over the floor: MaxConvergence
		// where the target is met.
		maxRecovery float64
	}{
		// Met at full size: 1.27x and 1.7% refused (seed 1), 0.0-3.4%
		// over seeds 1-5 (docs/FLEET.md §3).
		{"free 1000", 1000, emulator.DomainFree, false, MaxRefusedShare, MaxConvergence},
		{"free 1000 retry-after", 1000, emulator.DomainFree, true, MaxRefusedShare, MaxConvergence},
		// Met at full size: 1.29x and 0.3% (seed 1), 0.3-0.4% over seeds
		// 1-5. (Scaled down to 200 hosts at 2/s and 68/min, the
		// per-second limit binds instead: 1.68x and 18% refused.)
		{"premium 10000", 10000, emulator.DomainPremium, false, MaxRefusedShare, MaxConvergence},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			limit := withRetryAfter(emulator.DomainRateLimit(tt.typ), tt.retryAfter)
			r := run(t, Config{Name: tt.name, Hosts: tt.hosts, Limit: limit, Seed: 1,
				Warm: true, OutageAt: 5 * time.Minute, OutageFor: 30 * time.Minute, SweepEvery: 10 * time.Second,
				StartJitter: StartJitterFor(tt.hosts, limit.PerMinute)})
			logResult(t, r)
			out := r.Phase("outage")
			if out.Issued != 0 || out.Requests != out.Unavailable {
				t.Errorf("outage phase: %+v, want every request unavailable", out)
			}
			if out.Requests == 0 {
				t.Error("no request during the outage: the scenario tests nothing")
			}
			if r.Recovered < 0 {
				t.Fatal("the fleet never recovered")
			}
			if ratio := r.RecoveryRatio(); ratio > tt.maxRecovery {
				t.Errorf("recovered in %v, %.2fx the floor, want at most %.2fx", r.Recovered, ratio, tt.maxRecovery)
			}
			if got := r.Recovery().RefusedShare(); got >= tt.maxRefused {
				t.Errorf("%.1f%% of requests refused until recovery, want under %.1f%%", 100*got, 100*tt.maxRefused)
			}
			checkRecoveryClasses(t, r, tt.hosts)
			// Tokens issued up to 34 minutes before the start: those older
			// than 25 minutes run out during the outage, legitimately; the
			// others must all have been renewed before theirs did, except
			// where the recovery was too slow, which the result counts.
			if r.Lapsed == 0 {
				t.Error("no token lapsed during a 30-minute outage: the scenario tests nothing")
			}
			if r.LapsedAfterOutage > tt.hosts/100 {
				t.Errorf("%d tokens ran out after the domain was back, want at most 1%% of the hosts (%d)", r.LapsedAfterOutage, tt.hosts/100)
			}
		})
	}
}

// checkRecoveryClasses checks that the classes of RecoveryClasses add up
// to the requests until recovery, that no host sent more than one request
// other than a retry after a 429 (the domain answered 503 until then, and
// a token lives an hour), and that every retry after a 429 follows one of
// the window's refusals.
func checkRecoveryClasses(t *testing.T, r *Result, hosts int) {
	t.Helper()
	rec := r.Recovery()
	var requests, refused, first, retries int
	for _, c := range r.RecoveryClasses() {
		requests += c.Requests
		refused += c.Refused
		perMinute := 0
		for _, n := range c.PerMinute {
			perMinute += n
		}
		if perMinute != c.Requests {
			t.Errorf("class %s: %d requests per minute in all, want %d", c.Class, perMinute, c.Requests)
		}
		if strings.HasSuffix(c.Class, "after a 429") {
			retries += c.Requests
		} else {
			first += c.Requests
		}
	}
	if requests != rec.Requests || refused != rec.Refused {
		t.Errorf("classes: %d requests, %d refused; recovery: %d, %d", requests, refused, rec.Requests, rec.Refused)
	}
	if first > hosts {
		t.Errorf("%d first requests until recovery from %d hosts", first, hosts)
	}
	if retries > refused {
		t.Errorf("%d retries after a 429 until recovery, but %d refusals", retries, refused)
	}
}

// TestClassify checks the classes of host state against the fleet retry
// ceiling C, here the start jitter of ten minutes.
func TestClassify(t *testing.T) {
	s := &sim{cfg: Config{StartJitter: 10 * time.Minute}, clock: clocktest.New(Start)}
	now := Start.Add(time.Hour)
	tok := &token.Token{AccessToken: "t"}
	for _, tt := range []struct {
		name string
		h    host
		want string
	}{
		{"never held", host{}, "no token, first"},
		{"lapsed", host{held: tok, heldServed: now}, "no token, first"},
		{"short", host{held: tok, heldServed: now.Add(10*time.Minute - time.Second)}, "S < C, first"},
		{"long", host{held: tok, heldServed: now.Add(10 * time.Minute)}, "S >= C, first"},
		{"after 503", host{held: tok, heldServed: now.Add(time.Minute), last: unavailable, answered: true}, "S < C, first"},
		{"after 429", host{held: tok, heldServed: now.Add(time.Minute), last: refused, answered: true}, "S < C, after a 429"},
		{"lapsed after 429", host{last: refused, answered: true}, "no token, after a 429"},
	} {
		if got := s.classify(&tt.h, now).String(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDeterministic runs the same fleet twice: same result.
func TestDeterministic(t *testing.T) {
	cfg := Config{Hosts: 50, Limit: emulator.RateLimit{PerSecond: 1, PerMinute: 10}, Seed: 7,
		Warm: true, OutageAt: time.Minute, OutageFor: 10 * time.Minute, SweepEvery: time.Second}
	a, b := run(t, cfg), run(t, cfg)
	a.Wall, b.Wall = 0, 0
	if diff := cmp.Diff(a, b, cmp.AllowUnexported(Result{}, record{}, class{})); diff != "" {
		t.Errorf("two runs differ (-first +second):\n%s", diff)
	}
	cold := Config{Hosts: 50, Limit: emulator.RateLimit{PerSecond: 1, PerMinute: 10}, Seed: 7, StartJitter: StartJitterFor(50, 10)}
	a, b = run(t, cold), run(t, cold)
	a.Wall, b.Wall = 0, 0
	if diff := cmp.Diff(a, b, cmp.AllowUnexported(Result{}, record{}, class{})); diff != "" {
		t.Errorf("two cold starts differ (-first +second):\n%s", diff)
	}
}

// TestCheckCatchesViolations shows that the invariant check sees a host
// that does not serve the token it holds, from memory.
func TestCheckCatchesViolations(t *testing.T) {
	s, err := newSim(Config{Hosts: 3, Limit: emulator.RateLimit{PerSecond: 1}, Seed: 1, Warm: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.step(Start); err != nil { // every cache runs, holding its restored token
		t.Fatal(err)
	}
	if err := s.check(s.hosts); err != nil || s.res.Violations != 0 {
		t.Fatalf("healthy fleet: %v, %d violations: %v", err, s.res.Violations, s.res.Problems)
	}

	// Host 1 serves another token than the simulation believes it holds.
	held := *s.hosts[1].held
	held.AccessToken = "other"
	s.hosts[1].held = &held
	if err := s.check(s.hosts); err != nil {
		t.Fatal(err)
	}
	if s.res.Violations != 1 || !strings.Contains(s.res.Problems[0], "want the held other") {
		t.Errorf("wrong token: %d violations %q", s.res.Violations, s.res.Problems)
	}

	// Host 2 holds nothing the cache would serve (a fresh cache that never
	// ran): Get fetches, which the check reports twice, from the Fetcher and
	// from Get's error, without deadlocking.
	c, err := newSim(Config{Hosts: 1, Limit: emulator.RateLimit{PerSecond: 1}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	h := c.hosts[0]
	h.held, h.heldServed = &held, Start.Add(time.Hour)
	if err := c.check(c.hosts); err != nil {
		t.Fatal(err)
	}
	c.finish(0)
	if c.res.Violations != 2 {
		t.Errorf("fetching Get: %d violations %q, want 2", c.res.Violations, c.res.Problems)
	}
}

// TestLimiterMatchesEmulator holds the simulated endpoint to the
// emulator's rate limit: the same arrivals get the same answers, and
// the simulated 429 is the *oauth.Error that package oauth makes of the
// emulator's.
func TestLimiterMatchesEmulator(t *testing.T) {
	for _, ra := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry-after=%v", ra), func(t *testing.T) {
			now := Start
			limit := emulator.RateLimit{PerSecond: 3, PerMinute: 20, RetryAfter: ra}
			em, err := emulator.New(emulator.Options{Now: func() time.Time { return now }, RateLimit: limit,
				DomainURL: "https://idcs-fleet.identity.oraclecloud.com"})
			if err != nil {
				t.Fatal(err)
			}
			if err := em.AddApp(emulator.App{ClientID: "fleet", ClientSecret: "secret",
				GrantTypes: []string{emulator.GrantClientCredentials}}); err != nil {
				t.Fatal(err)
			}
			ep := endpoint{limiter: emulator.Limiter{Limit: limit}, lifetime: time.Hour}
			form := url.Values{"grant_type": {emulator.GrantClientCredentials}, "scope": {emulator.ScopeMyScopes}}
			// Bursts and lulls: gaps of 0 to 6 s, in a fixed pattern.
			gaps := []time.Duration{0, 0, 100 * time.Millisecond, 0, 900 * time.Millisecond, 2 * time.Second,
				0, 0, 0, 0, 300 * time.Millisecond, 6 * time.Second, 1500 * time.Millisecond, 0, 10 * time.Millisecond}
			refusals := 0
			for i := range 400 {
				now = now.Add(gaps[i*7%len(gaps)])
				req := httptest.NewRequest(http.MethodPost, emulator.TokenPath, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("fleet", "secret")
				rec := httptest.NewRecorder()
				em.ServeHTTP(rec, req)
				got := ep.answer(now, 0)
				switch {
				case rec.Code == http.StatusOK && got.outcome == issued:
				case rec.Code == http.StatusTooManyRequests && got.outcome == refused:
					refusals++
					want := oauth.ParseErrorResponse(rec.Code, rec.Header(), rec.Body.Bytes(), now)
					if diff := cmp.Diff(want, got.err); diff != "" {
						t.Fatalf("request %d at %v: 429 differs (-emulator +simulation):\n%s", i, now.Sub(Start), diff)
					}
				default:
					t.Fatalf("request %d at %v: emulator %d %s, simulation %v", i, now.Sub(Start), rec.Code, rec.Body, got.err)
				}
			}
			if refusals == 0 || refusals == 400 {
				t.Errorf("%d of 400 requests refused: the test tests nothing", refusals)
			}
		})
	}
}

// TestMeanRefreshInterval holds the capacity tables to the cache's refresh
// policy (package cache, "Refresh timing").
func TestMeanRefreshInterval(t *testing.T) {
	for _, tt := range []struct {
		lifetime, want time.Duration
	}{
		{time.Hour, 40 * time.Minute},                 // 2/3 L, the jitter symmetric
		{60 * time.Second, 27 * time.Second},          // past the 30 s margin: 24 to 30 s
		{5 * time.Second, 10 * time.Second},           // the minimum interval
		{8 * time.Hour, 320 * time.Minute},            // 2/3 L
		{100 * time.Second, 62778 * time.Millisecond}, // 2/3 of draws within the margin, 1/3 below it
	} {
		if got := MeanRefreshInterval(tt.lifetime); (got - tt.want).Abs() > 10*time.Millisecond {
			t.Errorf("MeanRefreshInterval(%v) = %v, want %v", tt.lifetime, got, tt.want)
		}
	}
}
