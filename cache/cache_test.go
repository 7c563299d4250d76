package cache_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/oauth"
)

var (
	errUnavailable  = &oauth.Error{StatusCode: 503, Description: "service unavailable with an empty body", Retryable: true}
	errInvalidGrant = &oauth.Error{StatusCode: 400, Code: oauth.CodeInvalidGrant,
		Description: "refresh token revoked"}
)

func failAlways(err error) func(int) error { return func(int) error { return err } }

func TestRunFetchesEveryProfileAndPersists(t *testing.T) {
	h := newHarness(t)
	a := newFetcher(h.clk, "a", time.Hour)
	b := newFetcher(h.clk, "b", time.Hour)
	h.c.SetProfiles([]cache.Profile{a.profile("fp-a"), b.profile("fp-b")})
	h.run()

	if a.numCalls() != 1 || b.numCalls() != 1 {
		t.Fatalf("fetches at start: a %d, b %d; want 1 each", a.numCalls(), b.numCalls())
	}
	got, ok := h.store.record("a")
	if !ok {
		t.Fatal("no record stored for a")
	}
	want := cache.Record{
		Profile:      "a",
		TokenType:    "Bearer",
		AccessToken:  "secret-access-a-1",
		RefreshToken: "secret-refresh-a-1",
		Scope:        "urn:opc:idm:__myscopes__",
		IssuedAt:     t0,
		Expiry:       t0.Add(time.Hour),
		Fingerprint:  "fp-a",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored record (-want +got):\n%s", diff)
	}
	// The steady state: Get answers from memory.
	if tok := h.mustGet("a"); tok.AccessToken != "secret-access-a-1" {
		t.Errorf("Get(a) = %s, want the fetched token", tok.AccessToken)
	}
	if n := h.fetchesStarted(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
	if lines := h.logs.lines(`"profile":"a"`, `"outcome":"ok"`, `"duration"`, `"next_refresh"`); len(lines) != 1 {
		t.Errorf("log lines for a's refresh = %d, want 1:\n%s", len(lines), h.logs.String())
	}
}

func TestRefreshScheduleAcrossSeeds(t *testing.T) {
	// For a one-hour token the scheduler refreshes within
	// [2/3 L - L/10, 2/3 L + L/10] = [34min, 46min]; the margin (6 min) does
	// not bind.
	lo, hi := t0.Add(34*time.Minute), t0.Add(46*time.Minute)
	var early, late bool
	for seed := range uint64(200) {
		h := newHarness(t, withSeed(seed))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		h.run()
		next := h.status("ci").NextRefresh
		if next.Before(lo) || next.After(hi) {
			t.Fatalf("seed %d: next refresh at +%v, want within [+34m, +46m]", seed, next.Sub(t0))
		}
		early = early || next.Before(t0.Add(40*time.Minute))
		late = late || next.After(t0.Add(40*time.Minute))
		if seed%50 == 0 {
			// The refresh happens then, and not before.
			h.advanceTo(next.Add(-time.Millisecond))
			if f.numCalls() != 1 {
				t.Fatalf("seed %d: %d fetches before the refresh time, want 1", seed, f.numCalls())
			}
			h.advanceTo(next)
			if f.numCalls() != 2 {
				t.Fatalf("seed %d: %d fetches at the refresh time, want 2", seed, f.numCalls())
			}
		}
		h.stopRun()
	}
	if !early || !late {
		t.Errorf("refresh times not spread around 40min: early %v, late %v", early, late)
	}
}

func TestNoRefreshStorm(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		// The number of fetches in [t0, t0+1h], all by the scheduler, is
		// within [lo, hi].
		lo, hi int
		why    string
	}{
		{"one-hour token", time.Hour, 2, 2, "at start and once between 34 and 46 minutes"},
		{"60s token", 60 * time.Second, 122, 150, "the 30s margin binds: every 24 to 30s (mean 27s)"},
		{"5s token", 5 * time.Second, 361, 361, "the 10s minimum interval binds: at 0, 10s, ..., 3600s"},
		{"1s token", time.Second, 361, 361, "the 10s minimum interval binds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, withoutStore())
			f := newFetcher(h.clk, "ci", tt.lifetime)
			h.c.SetProfiles([]cache.Profile{f.profile("fp")})
			h.run()
			h.advance(time.Hour)
			if got := f.numCalls(); got < tt.lo || got > tt.hi {
				t.Errorf("fetches in one hour = %d, want %d to %d (%s)", got, tt.lo, tt.hi, tt.why)
			}
		})
	}
}

func TestShortTokenLapsesAndGetFetchesOnDemand(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", 5*time.Second)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	// Served until min(10s, L/10) = 0.5s before expiry.
	h.advance(4499 * time.Millisecond)
	if tok := h.mustGet("ci"); tok.AccessToken != "secret-access-ci-1" {
		t.Fatalf("Get at 4.499s = %s, want the first token", tok.AccessToken)
	}
	h.advance(time.Millisecond)
	if got := h.status("ci").State; got != cache.StateExpired {
		t.Errorf("state at 4.5s = %q, want %q", got, cache.StateExpired)
	}
	tok := h.mustGet("ci")
	if tok.AccessToken != "secret-access-ci-2" {
		t.Fatalf("Get at 4.5s = %s, want a new token fetched on demand", tok.AccessToken)
	}
	// The scheduler's next refresh moved: 10s after the on-demand fetch.
	if got, want := h.status("ci").NextRefresh, t0.Add(14500*time.Millisecond); !got.Equal(want) {
		t.Errorf("next refresh at +%v, want +%v", got.Sub(t0), want.Sub(t0))
	}
}

func TestConcurrentGetsCauseOneFetch(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	release := f.hold()
	defer release()
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})

	const callers = 200
	var wg sync.WaitGroup
	results := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			tok, err := h.c.Get(context.Background(), "ci")
			errs[i] = err
			if tok != nil {
				results[i] = tok.AccessToken
			}
		})
	}
	h.waitWaiting(callers)
	if got := h.status("ci").State; got != cache.StateRefreshing {
		t.Errorf("state while fetching = %q, want %q", got, cache.StateRefreshing)
	}
	release()
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || results[i] != "secret-access-ci-1" {
			t.Fatalf("caller %d: %q, %v; want the one fetched token", i, results[i], errs[i])
		}
	}
	if n := f.numCalls(); n != 1 {
		t.Errorf("Fetch calls = %d, want 1", n)
	}
}

func TestWaiterBoundedByItsContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			f := newFetcher(h.clk, "ci", time.Hour)
			release := f.hold()
			defer release()
			h.c.SetProfiles([]cache.Profile{f.profile("fp")})

			// A patient caller starts the fetch.
			patient := make(chan string, 1)
			go func() {
				tok, err := h.c.Get(context.Background(), "ci")
				if err != nil {
					patient <- err.Error()
					return
				}
				patient <- tok.AccessToken
			}()
			h.waitWaiting(1)

			ctx, cancel := tt.ctx()
			defer cancel()
			tok, err := h.c.Get(ctx, "ci")
			if !errors.Is(err, tt.want) || tok != nil {
				t.Fatalf("impatient Get = %v, %v; want nil, %v", tok, err, tt.want)
			}
			if got := h.status("ci").State; got != cache.StateRefreshing {
				t.Errorf("state after the impatient caller left = %q, want the fetch still %q", got, cache.StateRefreshing)
			}
			release()
			if got := <-patient; got != "secret-access-ci-1" {
				t.Errorf("patient Get = %q, want the fetched token", got)
			}
			if n := f.numCalls(); n != 1 {
				t.Errorf("Fetch calls = %d, want 1", n)
			}
		})
	}
}

func TestBackoffGrowsToCap(t *testing.T) {
	h := newHarness(t, withSeed(3))
	f := newFetcher(h.clk, "ci", time.Hour)
	f.setFail(failAlways(errUnavailable))
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()

	sawCap := false
	for attempt := 1; attempt <= 20; attempt++ {
		s := h.status("ci")
		if s.Failures != attempt || f.numCalls() != attempt {
			t.Fatalf("attempt %d: failures %d, fetches %d", attempt, s.Failures, f.numCalls())
		}
		delay := s.NextRefresh.Sub(s.LastErrorAt)
		ceiling := min(time.Second<<(attempt-1), 5*time.Minute)
		if delay < 250*time.Millisecond || delay > ceiling {
			t.Fatalf("attempt %d: retry after %v, want within [250ms, %v]", attempt, delay, ceiling)
		}
		sawCap = sawCap || delay > 4*time.Minute+16*time.Second // above the 9th ceiling (256s)
		if at := h.advanceToNextTimer(); !at.Equal(s.NextRefresh) {
			t.Fatalf("attempt %d: timer at +%v, Status said +%v", attempt, at.Sub(t0), s.NextRefresh.Sub(t0))
		}
	}
	if !sawCap {
		t.Error("no retry delay above 256s: the ceiling did not grow to the 5min cap")
	}
	if s := h.status("ci"); s.State != cache.StateFailing || !strings.Contains(s.LastError, "HTTP 503") {
		t.Errorf("status = %+v, want failing with the 503", s)
	}
	if n, want := len(h.logs.lines(`"level":"WARN"`, `"outcome":"retryable_error"`)), f.numCalls(); n != want {
		t.Errorf("warning lines = %d, want one per attempt (%d)", n, want)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	slowDown := &oauth.Error{StatusCode: 429, Description: "too many requests", Retryable: true, RetryAfter: 2 * time.Minute}
	f.setFail(func(n int) error {
		if n == 1 {
			return slowDown
		}
		return nil
	})
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()

	retryAt := t0.Add(2 * time.Minute)
	if got := h.status("ci").NextRefresh; !got.Equal(retryAt) {
		t.Errorf("next attempt at +%v, want +2m", got.Sub(t0))
	}
	// Neither Get nor a forced Refresh goes before the Retry-After.
	_, err := h.c.Get(context.Background(), "ci")
	var re *cache.RefreshError
	if !errors.As(err, &re) || !re.RetryAt.Equal(retryAt) || !errors.Is(err, slowDown) {
		t.Fatalf("Get = %v, want a *RefreshError with RetryAt +2m wrapping the 429", err)
	}
	if _, err := h.c.Refresh(context.Background(), "ci"); err == nil || !strings.Contains(err.Error(), "asked to wait") {
		t.Fatalf("Refresh = %v, want a refusal until the Retry-After", err)
	}
	h.advance(2*time.Minute - time.Millisecond)
	if n := f.numCalls(); n != 1 {
		t.Fatalf("fetches before the Retry-After = %d, want 1", n)
	}
	h.advance(time.Millisecond)
	if n := f.numCalls(); n != 2 {
		t.Fatalf("fetches at the Retry-After = %d, want 2", n)
	}
	if tok := h.mustGet("ci"); tok.AccessToken != "secret-access-ci-2" {
		t.Errorf("Get = %s, want the token fetched after the Retry-After", tok.AccessToken)
	}
}

func TestPermanentErrorReportedAndRetriedSlowly(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	f.setFail(failAlways(errInvalidGrant))
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()

	s := h.status("ci")
	if s.State != cache.StateFailing || !s.LastErrorAt.Equal(t0) || !strings.Contains(s.LastError, "invalid_grant") {
		t.Errorf("status = %+v, want failing with invalid_grant at t0", s)
	}
	if n := len(h.logs.lines(`"level":"ERROR"`, `"profile":"ci"`, `"outcome":"permanent_error"`, "invalid_grant")); n != 1 {
		t.Errorf("error log lines = %d, want 1:\n%s", n, h.logs.String())
	}
	retry := s.NextRefresh.Sub(t0)
	if retry < 15*time.Minute || retry > 16*time.Minute+30*time.Second {
		t.Errorf("retry after %v, want within [15m, 16m30s]", retry)
	}

	// Get reports the failure at once, without a token request.
	_, err := h.c.Get(context.Background(), "ci")
	want := "profile ci: no valid token: last refresh failed at 2026-11-25T12:00:00Z: " +
		"token endpoint: invalid_grant: refresh token revoked (HTTP 400)"
	if err == nil || err.Error() != want {
		t.Errorf("Get error = %v\nwant %s", err, want)
	}
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidGrant {
		t.Errorf("Get error does not unwrap to the *oauth.Error: %v", err)
	}
	h.advanceTo(s.NextRefresh.Add(-time.Second))
	if n := f.numCalls(); n != 1 {
		t.Errorf("fetches before the slow retry = %d, want 1", n)
	}
	h.advanceTo(s.NextRefresh)
	if n := f.numCalls(); n != 2 {
		t.Errorf("fetches at the slow retry = %d, want 2", n)
	}
}

func TestOutageServesValidTokenButNeverAnExpiredOne(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	f.setFail(func(n int) error {
		if n > 1 {
			return errUnavailable
		}
		return nil
	})
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	first := h.mustGet("ci")
	expiry := t0.Add(time.Hour)
	servedUntil := expiry.Add(-10 * time.Second)

	sawFailingRefresh, sawRefreshError := false, false
	for h.clk.Now().Before(t0.Add(2 * time.Hour)) {
		h.advance(7 * time.Second)
		now := h.clk.Now()
		tok, err := h.c.Get(context.Background(), "ci")
		h.settle()
		switch {
		case now.Before(servedUntil):
			if err != nil || tok.AccessToken != first.AccessToken {
				t.Fatalf("at +%v: Get = %v, %v; want the still-valid token", now.Sub(t0), tok, err)
			}
			if s := h.status("ci"); s.LastError != "" {
				sawFailingRefresh = true
				if s.State != cache.StateValid {
					t.Fatalf("at +%v: state %q while the token is valid, want %q", now.Sub(t0), s.State, cache.StateValid)
				}
			}
		default:
			var re *cache.RefreshError
			if tok != nil || !errors.As(err, &re) {
				t.Fatalf("at +%v (token expired at +%v): Get = %v, %v; want a *RefreshError", now.Sub(t0), expiry.Sub(t0), tok, err)
			}
			if re.At.After(now) || re.At.Before(t0) || !errors.Is(err, errUnavailable) ||
				!strings.Contains(err.Error(), "profile ci: no valid token: last refresh failed at ") {
				t.Fatalf("at +%v: RefreshError %+v (%v)", now.Sub(t0), re, err)
			}
			sawRefreshError = true
		}
	}
	if !sawFailingRefresh || !sawRefreshError {
		t.Errorf("outage not exercised: failing refresh seen %v, refresh error seen %v", sawFailingRefresh, sawRefreshError)
	}
	if s := h.status("ci"); s.State != cache.StateFailing {
		t.Errorf("state after expiry = %q, want %q", s.State, cache.StateFailing)
	}
	// The endpoint recovers: the next attempt brings a token back.
	f.setFail(nil)
	h.advance(6 * time.Minute)
	if tok := h.mustGet("ci"); tok.AccessToken == first.AccessToken {
		t.Error("no new token after the endpoint recovered")
	}
}

func TestConcurrentGetsDuringBackoffMakeNoRequest(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	f.setFail(failAlways(errUnavailable))
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run() // the first attempt fails and arms a backoff
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			var re *cache.RefreshError
			if _, err := h.c.Get(context.Background(), "ci"); !errors.As(err, &re) {
				t.Errorf("Get during backoff = %v, want a *RefreshError", err)
			}
		})
	}
	wg.Wait()
	if n := f.numCalls(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestRestore(t *testing.T) {
	valid := cache.Record{
		Profile: "ci", TokenType: "Bearer", AccessToken: "secret-stored", RefreshToken: "secret-stored-refresh",
		IssuedAt: t0.Add(-10 * time.Minute), Expiry: t0.Add(50 * time.Minute), Fingerprint: "fp",
	}
	modify := func(f func(*cache.Record)) cache.Record {
		r := valid
		f(&r)
		return r
	}
	tests := []struct {
		name        string
		rec         cache.Record
		wantFetches int
		wantToken   string
		wantRefresh string // refresh token passed to the first fetch
	}{
		{"valid record is served without a request", valid, 0, "secret-stored", ""},
		{"other fingerprint is ignored", modify(func(r *cache.Record) { r.Fingerprint = "old" }), 1, "secret-access-ci-1", ""},
		{"expired record lends its refresh token",
			modify(func(r *cache.Record) { r.IssuedAt, r.Expiry = t0.Add(-2*time.Hour), t0.Add(-time.Hour) }),
			1, "secret-access-ci-1", "secret-stored-refresh"},
		{"record within the skew of expiry is expired",
			modify(func(r *cache.Record) { r.IssuedAt, r.Expiry = t0.Add(-time.Hour), t0.Add(5*time.Second) }),
			1, "secret-access-ci-1", "secret-stored-refresh"},
		{"record of an unknown profile is ignored", modify(func(r *cache.Record) { r.Profile = "gone" }), 1, "secret-access-ci-1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			f := newFetcher(h.clk, "ci", time.Hour)
			h.c.SetProfiles([]cache.Profile{f.profile("fp")})
			h.c.Restore([]cache.Record{tt.rec})
			h.run()
			if tok := h.mustGet("ci"); tok.AccessToken != tt.wantToken {
				t.Errorf("Get = %s, want %s", tok.AccessToken, tt.wantToken)
			}
			if n := f.numCalls(); n != tt.wantFetches {
				t.Errorf("fetches = %d, want %d", n, tt.wantFetches)
			}
			if rts := f.refreshTokens(); len(rts) > 0 && rts[0] != tt.wantRefresh {
				t.Errorf("first fetch got refresh token %q, want %q", rts[0], tt.wantRefresh)
			}
			if names := statusNames(h.c.Status()); !cmp.Equal(names, []string{"ci"}) {
				t.Errorf("profiles = %v, want [ci]", names)
			}
		})
	}
}

func TestRestoredTokenRefreshedOnSchedule(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	// Issued 50 minutes ago: past its refresh window, so Run refreshes now
	// while serving the stored token.
	h.c.Restore([]cache.Record{{Profile: "ci", AccessToken: "secret-stored", IssuedAt: t0.Add(-50 * time.Minute),
		Expiry: t0.Add(10 * time.Minute), Fingerprint: "fp"}})
	if tok := h.mustGet("ci"); tok.AccessToken != "secret-stored" {
		t.Fatalf("Get before Run = %s, want the stored token", tok.AccessToken)
	}
	if f.numCalls() != 0 {
		t.Fatalf("fetches before Run = %d, want 0", f.numCalls())
	}
	h.run()
	if n := f.numCalls(); n != 1 {
		t.Errorf("fetches after Run = %d, want 1 (the stored token is past 2/3 of its life)", n)
	}
}

func statusNames(ss []cache.ProfileStatus) []string {
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return names
}

func TestSetProfilesReload(t *testing.T) {
	h := newHarness(t)
	a := newFetcher(h.clk, "a", time.Hour)
	b := newFetcher(h.clk, "b", time.Hour)
	c := newFetcher(h.clk, "c", time.Hour)
	h.c.SetProfiles([]cache.Profile{a.profile("fp-a"), b.profile("fp-b"), c.profile("fp-c")})
	h.run()
	aTok := h.mustGet("a")

	a2 := newFetcher(h.clk, "a2", time.Hour) // unchanged settings, new fetcher object
	b2 := newFetcher(h.clk, "b2", time.Hour) // changed settings
	d := newFetcher(h.clk, "d", time.Hour)   // added
	profiles := []cache.Profile{a2.profile("fp-a"), b2.profile("fp-b2"), d.profile("fp-d")}
	profiles[0].Name, profiles[1].Name = "a", "b"
	h.c.SetProfiles(profiles)
	h.settle()

	t.Run("unchanged keeps its token", func(t *testing.T) {
		if tok := h.mustGet("a"); tok.AccessToken != aTok.AccessToken {
			t.Errorf("Get(a) = %s, want %s", tok.AccessToken, aTok.AccessToken)
		}
		if a2.numCalls() != 0 || a.numCalls() != 1 {
			t.Errorf("fetches: old %d, new %d; want 1, 0", a.numCalls(), a2.numCalls())
		}
	})
	t.Run("changed drops its token and refetches", func(t *testing.T) {
		if tok := h.mustGet("b"); tok.AccessToken != "secret-access-b2-1" {
			t.Errorf("Get(b) = %s, want the token of the new settings", tok.AccessToken)
		}
		if rec, _ := h.store.record("b"); rec.Fingerprint != "fp-b2" || rec.AccessToken != "secret-access-b2-1" {
			t.Errorf("stored record of b = %+v, want the new token under fp-b2", rec)
		}
		if rts := b2.refreshTokens(); len(rts) != 1 || rts[0] != "" {
			t.Errorf("new fetcher got refresh tokens %q, want one call without the old refresh token", rts)
		}
	})
	t.Run("removed disappears", func(t *testing.T) {
		if _, err := h.c.Get(context.Background(), "c"); !errors.Is(err, cache.ErrUnknownProfile) {
			t.Errorf("Get(c) = %v, want ErrUnknownProfile", err)
		}
		if _, ok := h.store.record("c"); ok {
			t.Error("record of c still stored")
		}
	})
	t.Run("added is fetched", func(t *testing.T) {
		if d.numCalls() != 1 {
			t.Errorf("fetches of d = %d, want 1 (at reload)", d.numCalls())
		}
		h.mustGet("d")
	})
	if names := statusNames(h.c.Status()); !cmp.Equal(names, []string{"a", "b", "d"}) {
		t.Errorf("profiles = %v, want [a b d]", names)
	}
	wantOps := []string{"put a", "put b", "put c", "delete b", "delete c", "put b", "put d"}
	if diff := cmp.Diff(wantOps, h.store.opsLog(), cmpopts.SortSlices(func(x, y string) bool { return x < y })); diff != "" {
		t.Errorf("store operations (-want +got):\n%s", diff)
	}
	ops := h.store.opsLog()
	if i, j := indexOf(ops, "delete b"), lastIndexOf(ops, "put b"); i > j {
		t.Errorf("store operations %v: the new token of b was written before the old record was deleted", ops)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func lastIndexOf(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func TestSetProfilesDuringFetchDiscardsOldResult(t *testing.T) {
	h := newHarness(t)
	old := newFetcher(h.clk, "old", time.Hour)
	release := old.hold()
	defer release()
	p := old.profile("fp-1")
	p.Name = "ci"
	h.c.SetProfiles([]cache.Profile{p})

	got := make(chan string, 1)
	go func() {
		tok, err := h.c.Get(context.Background(), "ci")
		if err != nil {
			got <- err.Error()
			return
		}
		got <- tok.AccessToken
	}()
	h.waitWaiting(1)

	changed := newFetcher(h.clk, "new", time.Hour)
	p2 := changed.profile("fp-2")
	p2.Name = "ci"
	h.c.SetProfiles([]cache.Profile{p2})
	if tok := <-got; tok != "secret-access-new-1" {
		t.Errorf("waiter got %q, want the token of the new settings", tok)
	}
	h.settle()
	if rec, _ := h.store.record("ci"); rec.Fingerprint != "fp-2" {
		t.Errorf("stored record %+v, want the new settings' token", rec)
	}
	if ops := h.store.opsLog(); !cmp.Equal(ops, []string{"delete ci", "put ci"}) {
		t.Errorf("store operations = %q, want the old record deleted and only the new token put", ops)
	}
	if n := len(h.logs.lines(`"outcome":"discarded"`)); n != 1 {
		t.Errorf("discarded fetch log lines = %d, want 1", n)
	}
}

func TestForget(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	first := h.mustGet("ci")
	h.settle()

	if err := h.c.Forget("ci"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.store.record("ci"); ok {
		t.Error("record still stored after Forget")
	}
	if s := h.status("ci"); s.State != cache.StateEmpty || s.HasRefreshToken || !s.ExpiresAt.IsZero() {
		t.Errorf("status after Forget = %+v, want empty", s)
	}
	second := h.mustGet("ci")
	if second.AccessToken == first.AccessToken || f.numCalls() != 2 {
		t.Errorf("Get after Forget = %s after %d fetches, want a new token from a second fetch", second.AccessToken, f.numCalls())
	}
	if rts := f.refreshTokens(); rts[1] != "" {
		t.Errorf("fetch after Forget used refresh token %q, want none", rts[1])
	}
	if err := h.c.Forget("nope"); !errors.Is(err, cache.ErrUnknownProfile) {
		t.Errorf("Forget(nope) = %v, want ErrUnknownProfile", err)
	}
}

// TestForgetRefused: only the token held now is dropped for a refusal; a
// refused secret that is an older token, another password, or empty
// changes nothing, and asks the endpoint for nothing.
func TestForgetRefused(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	if forgot, err := h.c.ForgetRefused("ci", "anything"); forgot || err != nil {
		t.Fatalf("ForgetRefused with no token held = %v, %v; want false, nil", forgot, err)
	}
	first := h.mustGet("ci")
	h.settle()
	for _, refused := range []string{"", "someone-elses-password", first.AccessToken + "x", first.AccessToken[:len(first.AccessToken)-1]} {
		if forgot, err := h.c.ForgetRefused("ci", refused); forgot || err != nil {
			t.Errorf("ForgetRefused(%q) = %v, %v; want false, nil", refused, forgot, err)
		}
	}
	if tok := h.mustGet("ci"); tok.AccessToken != first.AccessToken || f.numCalls() != 1 {
		t.Fatalf("after refusals of other secrets: %s after %d fetches, want the first token and 1 fetch", tok.AccessToken, f.numCalls())
	}

	if forgot, err := h.c.ForgetRefused("ci", first.AccessToken); !forgot || err != nil {
		t.Fatalf("ForgetRefused(the held token) = %v, %v; want true, nil", forgot, err)
	}
	if _, ok := h.store.record("ci"); ok {
		t.Error("record still stored after its token was refused")
	}
	second := h.mustGet("ci")
	if second.AccessToken == first.AccessToken || f.numCalls() != 2 {
		t.Errorf("Get after the refusal = %s after %d fetches, want a new token", second.AccessToken, f.numCalls())
	}
	// The first token's refusal arriving late does not drop its successor.
	if forgot, err := h.c.ForgetRefused("ci", first.AccessToken); forgot || err != nil {
		t.Errorf("late ForgetRefused(the first token) = %v, %v; want false, nil", forgot, err)
	}
	if _, err := h.c.ForgetRefused("nope", "x"); !errors.Is(err, cache.ErrUnknownProfile) {
		t.Errorf("ForgetRefused(nope) = %v, want ErrUnknownProfile", err)
	}
}

func TestForgetWhileRunningRefetches(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	if err := h.c.Forget("ci"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if f.numCalls() != 2 || h.status("ci").State != cache.StateValid {
		t.Errorf("after Forget: %d fetches, state %q; want 2, valid", f.numCalls(), h.status("ci").State)
	}
}

func TestImport(t *testing.T) {
	imported := func(refresh string) *oauth.Token {
		return &oauth.Token{AccessToken: "secret-imported", TokenType: "Bearer", RefreshToken: refresh,
			IssuedAt: t0, Expiry: t0.Add(time.Hour)}
	}
	t.Run("import-only profile serves the imported token until it expires", func(t *testing.T) {
		h := newHarness(t)
		f := newFetcher(h.clk, "console", time.Hour)
		h.c.SetProfiles([]cache.Profile{{Name: "console", Fingerprint: "fp", Fetcher: f}})
		h.run()
		if _, err := h.c.Get(context.Background(), "console"); !errors.Is(err, cache.ErrNoToken) {
			t.Fatalf("Get before import = %v, want ErrNoToken", err)
		}
		if err := h.c.Import("console", imported("")); err != nil {
			t.Fatal(err)
		}
		if tok := h.mustGet("console"); tok.AccessToken != "secret-imported" {
			t.Errorf("Get = %s, want the imported token", tok.AccessToken)
		}
		if rec, ok := h.store.record("console"); !ok || rec.Fingerprint != "fp" || !rec.Expiry.Equal(t0.Add(time.Hour)) {
			t.Errorf("stored record = %+v, %v; want the imported token under fp", rec, ok)
		}
		if s := h.status("console"); !s.NextRefresh.IsZero() || s.State != cache.StateValid {
			t.Errorf("status = %+v, want valid with no refresh planned", s)
		}
		// Refresh cannot renew it, and says so without calling it expired.
		_, err := h.c.Refresh(context.Background(), "console")
		if !errors.Is(err, cache.ErrNoToken) || strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "served until") {
			t.Errorf("Refresh of a valid imported token without a refresh token = %v, want ErrNoToken saying it is served until its margin", err)
		}
		h.advance(2 * time.Hour)
		_, err = h.c.Get(context.Background(), "console")
		if !errors.Is(err, cache.ErrNoToken) || !strings.Contains(err.Error(), "expired at 2026-11-25T13:00:00Z") {
			t.Errorf("Get after expiry = %v, want ErrNoToken naming the expiry", err)
		}
		if s := h.status("console"); s.State != cache.StateExpired {
			t.Errorf("state after expiry = %q, want %q", s.State, cache.StateExpired)
		}
		if n := f.numCalls(); n != 0 {
			t.Errorf("fetches = %d, want 0", n)
		}
	})
	t.Run("imported refresh token keeps an import-only profile warm", func(t *testing.T) {
		h := newHarness(t)
		f := newFetcher(h.clk, "console", time.Hour)
		h.c.SetProfiles([]cache.Profile{{Name: "console", Fingerprint: "fp", Fetcher: f}})
		h.run()
		if err := h.c.Import("console", imported("secret-imported-refresh")); err != nil {
			t.Fatal(err)
		}
		if !h.status("console").HasRefreshToken {
			t.Error("status does not show the refresh token")
		}
		h.advance(50 * time.Minute)
		if rts := f.refreshTokens(); len(rts) != 1 || rts[0] != "secret-imported-refresh" {
			t.Errorf("refresh tokens passed = %q, want one refresh with the imported one", rts)
		}
		h.mustGet("console")
	})
	t.Run("import replaces a fetch in flight", func(t *testing.T) {
		h := newHarness(t)
		f := newFetcher(h.clk, "ci", time.Hour)
		release := f.hold()
		defer release()
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		got := make(chan string, 1)
		go func() {
			tok, err := h.c.Get(context.Background(), "ci")
			if err != nil {
				got <- err.Error()
				return
			}
			got <- tok.AccessToken
		}()
		h.waitWaiting(1)
		if err := h.c.Import("ci", imported("")); err != nil {
			t.Fatal(err)
		}
		if tok := <-got; tok != "secret-imported" {
			t.Errorf("waiter got %q, want the imported token", tok)
		}
	})
	t.Run("rejected imports", func(t *testing.T) {
		h := newHarness(t)
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		expired := imported("")
		expired.Expiry = t0.Add(-time.Second)
		tests := []struct {
			name    string
			profile string
			tok     *oauth.Token
			want    string
		}{
			{"unknown profile", "nope", imported(""), "unknown profile"},
			{"expired token", "ci", expired, "expired at 2026-11-25T11:59:59Z"},
			{"no token", "ci", nil, "no access token"},
			{"empty token", "ci", &oauth.Token{Expiry: t0.Add(time.Hour)}, "no access token"},
		}
		for _, tt := range tests {
			if err := h.c.Import(tt.profile, tt.tok); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: Import = %v, want an error containing %q", tt.name, err, tt.want)
			}
		}
		if _, ok := h.store.record("ci"); ok {
			t.Error("a rejected import was stored")
		}
	})
}

func TestRefreshForcesAFetch(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	tok, err := h.c.Refresh(context.Background(), "ci")
	if err != nil || tok.AccessToken != "secret-access-ci-2" || tok.RefreshToken != "" {
		t.Fatalf("Refresh = %+v, %v; want the second token without its refresh token", tok, err)
	}
	if rts := f.refreshTokens(); rts[1] != "secret-refresh-ci-1" {
		t.Errorf("Refresh used refresh token %q, want the first token's", rts[1])
	}
	// A failing forced refresh reports the error and leaves the valid token served.
	f.setFail(failAlways(errInvalidGrant))
	if _, err := h.c.Refresh(context.Background(), "ci"); err == nil ||
		!strings.HasPrefix(err.Error(), "profile ci: refresh failed: token endpoint: invalid_grant") {
		t.Errorf("failing Refresh = %v", err)
	}
	// The permanent failure's backoff does not stop another forced refresh.
	f.setFail(nil)
	if _, err := h.c.Refresh(context.Background(), "ci"); err != nil {
		t.Errorf("Refresh during backoff = %v, want a new token", err)
	}
	if tok := h.mustGet("ci"); tok.AccessToken != "secret-access-ci-4" {
		t.Errorf("Get = %s, want the last token", tok.AccessToken)
	}
	if _, err := h.c.Refresh(context.Background(), "nope"); !errors.Is(err, cache.ErrUnknownProfile) {
		t.Errorf("Refresh(nope) = %v, want ErrUnknownProfile", err)
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t)
	ok := newFetcher(h.clk, "ok", time.Hour)
	failing := newFetcher(h.clk, "failing", time.Hour)
	failing.setFail(failAlways(errInvalidGrant))
	imp := newFetcher(h.clk, "import", time.Hour)
	h.c.SetProfiles([]cache.Profile{ok.profile("fp"), failing.profile("fp"), {Name: "import", Fingerprint: "fp", Fetcher: imp}})
	before := h.c.Status()
	for _, s := range before {
		if s.State != cache.StateEmpty {
			t.Errorf("%s before any fetch: state %q, want empty", s.Name, s.State)
		}
	}
	h.run()
	h.advance(time.Minute)

	got := h.c.Status()
	want := []cache.ProfileStatus{
		{Name: "failing", State: cache.StateFailing, LastErrorAt: t0, Failures: 1,
			LastError: "token endpoint: invalid_grant: refresh token revoked (HTTP 400)"},
		{Name: "import", State: cache.StateEmpty},
		{Name: "ok", State: cache.StateValid, ExpiresAt: t0.Add(time.Hour), LastRefresh: t0, HasRefreshToken: true},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(cache.ProfileStatus{}, "NextRefresh")); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
	if next := got[0].NextRefresh.Sub(t0); next < 15*time.Minute || next > 16*time.Minute+30*time.Second {
		t.Errorf("failing: next refresh at +%v, want the slow retry", next)
	}
	if !got[1].NextRefresh.IsZero() {
		t.Errorf("import: next refresh %v, want none", got[1].NextRefresh)
	}
	if next := got[2].NextRefresh.Sub(t0); next < 34*time.Minute || next > 46*time.Minute {
		t.Errorf("ok: next refresh at +%v, want within [34m, 46m]", next)
	}
}

func TestStoreErrorStillServes(t *testing.T) {
	h := newHarness(t)
	h.store.setPutErr(errors.New("disk full"))
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	if tok := h.mustGet("ci"); tok.AccessToken != "secret-access-ci-1" {
		t.Errorf("Get = %s, want the fetched token", tok.AccessToken)
	}
	if s := h.status("ci"); s.StoreError != "disk full" || s.State != cache.StateValid {
		t.Errorf("status = %+v, want valid with the store error noted", s)
	}
	if n := len(h.logs.lines(`"level":"ERROR"`, "saving the token failed", "disk full")); n != 1 {
		t.Errorf("store error log lines = %d, want 1", n)
	}
	// The next successful save clears the note.
	h.store.setPutErr(nil)
	if _, err := h.c.Refresh(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if s := h.status("ci"); s.StoreError != "" {
		t.Errorf("store error after a good save = %q, want none", s.StoreError)
	}
}

func TestRunStopsCleanly(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	release := f.hold()
	defer release()
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.start() // its fetch is held

	waiter := make(chan error, 1)
	go func() {
		_, err := h.c.Get(context.Background(), "ci")
		waiter <- err
	}()
	h.waitWaiting(1)
	h.stopRun() // cancels the held fetch and returns nil
	if err := <-waiter; !errors.Is(err, cache.ErrClosed) {
		t.Errorf("waiter of a fetch cancelled by shutdown = %v, want ErrClosed", err)
	}
	if _, err := h.c.Get(context.Background(), "ci"); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Get after Run = %v, want ErrClosed", err)
	}
	if err := h.c.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
	if s := h.status("ci"); s.Failures != 0 {
		t.Errorf("shutdown counted as a failure: %+v", s)
	}
}

func TestGetUnknownProfile(t *testing.T) {
	h := newHarness(t)
	_, err := h.c.Get(context.Background(), "nope")
	if !errors.Is(err, cache.ErrUnknownProfile) || err.Error() != "profile nope: unknown profile" {
		t.Errorf("Get(nope) = %v", err)
	}
}

// realFetcher makes one-hour tokens on the system clock.
type realFetcher struct{}

func (realFetcher) Fetch(context.Context, string) (*oauth.Token, error) {
	return &oauth.Token{AccessToken: "secret-real", Expiry: time.Now().Add(time.Hour)}, nil
}

func TestDefaultsWithSystemClock(t *testing.T) {
	c := cache.New(cache.Options{})
	c.SetProfiles([]cache.Profile{{Name: "ci", Fingerprint: "fp", Fetcher: realFetcher{}, CanFetch: true}})
	tok, err := c.Get(context.Background(), "ci")
	if err != nil || tok.AccessToken != "secret-real" {
		t.Fatalf("Get = %v, %v", tok, err)
	}
	s := c.Status()[0]
	if s.State != cache.StateValid || s.LastRefresh.IsZero() || s.ExpiresAt.Sub(s.LastRefresh) > time.Hour {
		t.Errorf("status = %+v", s)
	}
	// The token's unknown IssuedAt became the absolute time of the fetch.
	if tok.IssuedAt.IsZero() {
		t.Error("IssuedAt left zero")
	}
}

func TestImportWithoutIssuedAtStoresAbsoluteTimes(t *testing.T) {
	h := newHarness(t)
	h.c.SetProfiles([]cache.Profile{{Name: "console", Fingerprint: "fp"}})
	h.advance(time.Minute)
	if err := h.c.Import("console", &oauth.Token{AccessToken: "secret-x", Expiry: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rec, _ := h.store.record("console")
	if !rec.IssuedAt.Equal(t0.Add(time.Minute)) || !rec.Expiry.Equal(t0.Add(time.Hour)) {
		t.Errorf("stored times issued %v, expiry %v; want the import time and the expiry", rec.IssuedAt, rec.Expiry)
	}
}

// expiredFetcher returns tokens that are already expired.
type expiredFetcher struct{ now func() time.Time }

func (f expiredFetcher) Fetch(context.Context, string) (*oauth.Token, error) {
	return &oauth.Token{AccessToken: "secret-stale", Expiry: f.now().Add(-time.Second)}, nil
}

func TestFetcherReturningAnExpiredTokenIsAFailure(t *testing.T) {
	h := newHarness(t)
	h.c.SetProfiles([]cache.Profile{{Name: "ci", Fingerprint: "fp", Fetcher: expiredFetcher{h.clk.Now}, CanFetch: true}})
	_, err := h.c.Get(context.Background(), "ci")
	var re *cache.RefreshError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "the fetcher returned a token that expired") {
		t.Fatalf("Get = %v, want a *RefreshError about the expired token", err)
	}
	h.settle()
	if s := h.status("ci"); s.State != cache.StateFailing || s.Failures != 1 {
		t.Errorf("status = %+v, want failing once", s)
	}
}

func TestObserveSeesEveryFetchOutcome(t *testing.T) {
	var mu sync.Mutex
	var got []string
	observe := func(o *cache.Options) {
		o.Observe = func(r cache.FetchResult) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, r.Profile+" "+r.Trigger+" "+r.Outcome)
			if (r.Outcome == "ok") != (r.Err == nil) {
				t.Errorf("result %+v: Err does not match the outcome", r)
			}
		}
	}
	h := newHarness(t, observe)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	f.setFail(func(n int) error {
		if n == 2 {
			return errUnavailable
		}
		return errInvalidGrant
	})
	for range 2 {
		if _, err := h.c.Refresh(context.Background(), "ci"); err == nil {
			t.Fatal("Refresh succeeded against a failing fetcher")
		}
	}
	h.settle()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"ci scheduled ok", "ci refresh retryable_error", "ci refresh permanent_error"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}
