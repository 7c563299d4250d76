package cache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/oauth"
)

// The tests of this file cover what keeps a fleet of caches within an
// identity domain's rate limits: the start jitter, the longer backoff after
// a 429 and the retry cap that keeps a held token served (package comment,
// "Start jitter" and "Failures").

const startJitter = 10 * time.Minute

func withStartJitter(d time.Duration) harnessOption {
	return func(o *cache.Options) { o.StartJitter = d }
}

var errRateLimited = &oauth.Error{StatusCode: 429, Code: oauth.CodeTemporarilyUnavail, Description: "rate limit exceeded", Retryable: true}

// TestStartJitterSpreadsTheFirstFetch: with a StartJitter, Run fetches
// nothing at once; each profile's first fetch comes at a moment drawn
// uniformly within [0, StartJitter), which Status shows, and not before.
func TestStartJitterSpreadsTheFirstFetch(t *testing.T) {
	var early, late bool
	for seed := range uint64(100) {
		h := newHarness(t, withSeed(seed), withStartJitter(startJitter))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		h.run()
		if n := f.numCalls(); n != 0 {
			t.Fatalf("seed %d: %d fetches when Run starts, want 0", seed, n)
		}
		s := h.status("ci")
		if s.State != cache.StateEmpty || s.NextRefresh.Before(t0) || !s.NextRefresh.Before(t0.Add(startJitter)) {
			t.Fatalf("seed %d: status %+v, want empty with the first fetch within [+0, +%v)", seed, s, startJitter)
		}
		early = early || s.NextRefresh.Before(t0.Add(startJitter/2))
		late = late || s.NextRefresh.After(t0.Add(startJitter/2))
		if seed%20 == 0 {
			h.advanceTo(s.NextRefresh.Add(-time.Millisecond))
			if n := f.numCalls(); n != 0 {
				t.Fatalf("seed %d: %d fetches before the drawn start, want 0", seed, n)
			}
			h.advanceTo(s.NextRefresh)
			if n := f.numCalls(); n != 1 {
				t.Fatalf("seed %d: %d fetches at the drawn start, want 1", seed, n)
			}
			if tok := h.mustGet("ci"); tok.AccessToken != "secret-access-ci-1" {
				t.Fatalf("seed %d: Get = %s, want the token of the first fetch", seed, tok.AccessToken)
			}
		}
		h.stopRun()
	}
	if !early || !late {
		t.Errorf("first fetches not spread over the jitter: early %v, late %v", early, late)
	}
}

// TestStartedMeansPlanned: Started stays open until Run has drawn the
// first fetches, so that a status read once it is closed (as the daemon's
// readiness is) shows the jittered plan and not "now".
func TestStartedMeansPlanned(t *testing.T) {
	h := newHarness(t, withStartJitter(startJitter))
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	select {
	case <-h.c.Started():
		t.Fatal("Started is closed before Run")
	default:
	}
	if s := h.status("ci"); !s.NextRefresh.Equal(t0) {
		t.Fatalf("before Run: next refresh %v, want now (%v): nothing is planned yet", s.NextRefresh, t0)
	}
	h.start() // returns once Started is closed
	if s := h.status("ci"); !s.NextRefresh.After(t0) {
		t.Errorf("once Started: next refresh %v, want the drawn moment after %v", s.NextRefresh, t0)
	}
}

// TestStartJitterNeverDelaysACaller: a Get or a Refresh during the jitter
// fetches at once, and the profile is then scheduled by its token, not by
// the start jitter.
func TestStartJitterNeverDelaysACaller(t *testing.T) {
	h := newHarness(t, withStartJitter(startJitter))
	a := newFetcher(h.clk, "a", time.Hour)
	b := newFetcher(h.clk, "b", time.Hour)
	c := newFetcher(h.clk, "c", time.Hour)
	c.setFail(func(n int) error {
		if n == 1 {
			return errUnavailable
		}
		return nil
	})
	h.c.SetProfiles([]cache.Profile{a.profile("fp"), b.profile("fp"), c.profile("fp")})
	h.run()

	if tok := h.mustGet("a"); tok.AccessToken != "secret-access-a-1" || a.numCalls() != 1 {
		t.Fatalf("Get(a) during the jitter = %s after %d fetches, want a token at once", tok.AccessToken, a.numCalls())
	}
	if tok, err := h.c.Refresh(context.Background(), "b"); err != nil || tok.AccessToken != "secret-access-b-1" {
		t.Fatalf("Refresh(b) during the jitter = %v, %v; want a token at once", tok, err)
	}
	// A Get whose fetch fails leaves the profile to the backoff of that
	// failure (at most BaseBackoff), not to the start jitter.
	_, err := h.c.Get(context.Background(), "c")
	var re *cache.RefreshError
	if !errors.As(err, &re) || c.numCalls() != 1 {
		t.Fatalf("Get(c) during the jitter = %v after %d fetches, want the fetch's failure", err, c.numCalls())
	}
	if d := h.status("c").NextRefresh.Sub(t0); d > time.Second {
		t.Errorf("c retries after %v, want the backoff of its failure (at most 1s)", d)
	}
	for _, name := range []string{"a", "b"} {
		if next := h.status(name).NextRefresh; next.Before(t0.Add(34*time.Minute)) || next.After(t0.Add(46*time.Minute)) {
			t.Errorf("%s: next refresh at +%v, want the token's schedule, within [+34m, +46m]", name, next.Sub(t0))
		}
	}
	h.advance(startJitter)
	if na, nb, nc := a.numCalls(), b.numCalls(), c.numCalls(); na != 1 || nb != 1 || nc != 2 {
		t.Errorf("fetches after the jitter: a %d, b %d, c %d; want 1, 1, 2", na, nb, nc)
	}
}

// TestStartJitterLeavesRestoredTokensAlone: a profile restored with a
// valid token is scheduled exactly as without a start jitter, and the
// jitter draws nothing for it; an expired record's refresh token waits
// for the jittered fetch.
func TestStartJitterLeavesRestoredTokensAlone(t *testing.T) {
	valid := cache.Record{Profile: "ci", TokenType: "Bearer", AccessToken: "secret-stored", IssuedAt: t0.Add(-10 * time.Minute),
		Expiry: t0.Add(50 * time.Minute), Fingerprint: "fp"}
	expired := cache.Record{Profile: "old", TokenType: "Bearer", AccessToken: "secret-stored-old", RefreshToken: "secret-stored-refresh",
		IssuedAt: t0.Add(-2 * time.Hour), Expiry: t0.Add(-time.Hour), Fingerprint: "fp"}

	var next [2]time.Time
	for i, jitter := range []time.Duration{0, startJitter} {
		h := newHarness(t, withSeed(5), withStartJitter(jitter))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		h.c.Restore([]cache.Record{valid})
		h.run()
		if n := f.numCalls(); n != 0 {
			t.Fatalf("StartJitter %v: %d fetches, want 0", jitter, n)
		}
		next[i] = h.status("ci").NextRefresh
		h.stopRun()
	}
	if !next[0].Equal(next[1]) {
		t.Errorf("restored token refreshed at +%v with a start jitter, +%v without", next[1].Sub(t0), next[0].Sub(t0))
	}

	h := newHarness(t, withStartJitter(startJitter))
	f := newFetcher(h.clk, "old", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.c.Restore([]cache.Record{expired})
	h.run()
	s := h.status("old")
	if f.numCalls() != 0 || !s.HasRefreshToken || s.NextRefresh.Before(t0) || !s.NextRefresh.Before(t0.Add(startJitter)) {
		t.Fatalf("expired record: %d fetches, status %+v; want none yet, the first within the jitter", f.numCalls(), s)
	}
	h.advanceTo(s.NextRefresh)
	if rts := f.refreshTokens(); len(rts) != 1 || rts[0] != "secret-stored-refresh" {
		t.Errorf("jittered fetch used refresh tokens %q, want the stored one", rts)
	}
}

// TestStartJitterOnReload: while the cache runs, a profile that
// SetProfiles adds, or whose fingerprint it changes, gets its first fetch
// within the jitter; an unchanged one keeps its token and schedule.
func TestStartJitterOnReload(t *testing.T) {
	h := newHarness(t, withStartJitter(startJitter))
	a := newFetcher(h.clk, "a", time.Hour)
	b := newFetcher(h.clk, "b", time.Hour)
	c := newFetcher(h.clk, "c", time.Hour)
	h.c.SetProfiles([]cache.Profile{a.profile("fp"), b.profile("fp")})
	h.run()
	h.advance(startJitter)
	if a.numCalls() != 1 || b.numCalls() != 1 {
		t.Fatalf("fetches after the start jitter: a %d, b %d; want 1 each", a.numCalls(), b.numCalls())
	}
	aNext := h.status("a").NextRefresh

	reload := h.clk.Now()
	h.c.SetProfiles([]cache.Profile{a.profile("fp"), b.profile("fp-changed"), c.profile("fp")})
	h.settle()
	if na, nb, nc := a.numCalls(), b.numCalls(), c.numCalls(); na != 1 || nb != 1 || nc != 0 {
		t.Fatalf("fetches at the reload: a %d, b %d, c %d; want 1, 1, 0", na, nb, nc)
	}
	if got := h.status("a").NextRefresh; !got.Equal(aNext) {
		t.Errorf("unchanged a: next refresh +%v, want +%v as before the reload", got.Sub(t0), aNext.Sub(t0))
	}
	for _, name := range []string{"b", "c"} {
		s := h.status(name)
		if s.State != cache.StateEmpty || s.NextRefresh.Before(reload) || !s.NextRefresh.Before(reload.Add(startJitter)) {
			t.Errorf("%s: status %+v, want empty with the first fetch within %v of the reload", name, s, startJitter)
		}
	}
	h.advance(startJitter)
	if nb, nc := b.numCalls(), c.numCalls(); nb != 2 || nc != 1 {
		t.Errorf("fetches after the reload's jitter: b %d, c %d; want 2, 1", nb, nc)
	}
}

// TestRateLimitedRetriesWaitLonger: after a 429 the first retry comes
// within a minute (RateLimitBackoff), not within the 1s of other failures.
func TestRateLimitedRetriesWaitLonger(t *testing.T) {
	var long bool
	for seed := range uint64(30) {
		h := newHarness(t, withSeed(seed))
		f := newFetcher(h.clk, "ci", time.Hour)
		f.setFail(failAlways(errRateLimited))
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		h.run()
		s := h.status("ci")
		d := s.NextRefresh.Sub(s.LastErrorAt)
		if d < 250*time.Millisecond || d > time.Minute {
			t.Fatalf("seed %d: retry %v after a 429, want within [250ms, 1m]", seed, d)
		}
		long = long || d > 30*time.Second
		h.stopRun()
	}
	if !long {
		t.Error("no retry after a 429 waited over 30s: the rate-limit backoff is not applied")
	}
}

// TestRetriesCatchTheDomainBeforeTheTokenRunsOut: while the held token is
// served, no retry waits more than half of what is left of it (at least
// 1s). So when the domain comes back at least 2s before the token stops
// being served, the cache has a new token before then, whatever its
// jitter draws; a backoff of up to 5 minutes would often miss that.
func TestRetriesCatchTheDomainBeforeTheTokenRunsOut(t *testing.T) {
	serveEnd := t0.Add(time.Hour - 10*time.Second) // the first token's
	for _, back := range []time.Duration{2 * time.Second, 5 * time.Second, 90 * time.Second} {
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("back %v before, seed %d", back, seed), func(t *testing.T) {
				h := newHarness(t, withSeed(seed))
				f := newFetcher(h.clk, "ci", time.Hour)
				var attempts []time.Time
				f.setFail(func(n int) error {
					now := h.clk.Now()
					attempts = append(attempts, now)
					if n > 1 && now.Before(serveEnd.Add(-back)) {
						return errUnavailable
					}
					return nil
				})
				h.c.SetProfiles([]cache.Profile{f.profile("fp")})
				h.run()
				first := h.mustGet("ci")
				for h.mustGet("ci").AccessToken == first.AccessToken {
					if at := h.advanceToNextTimer(); !at.Before(serveEnd) {
						t.Fatalf("no new token by +%v, when the first stopped being served; attempts at %v", at.Sub(t0), offsets(attempts))
					}
				}
				for i := 2; i < len(attempts); i++ {
					prev, gap := attempts[i-1], attempts[i].Sub(attempts[i-1])
					if limit := max(serveEnd.Sub(prev)/2, time.Second); gap > limit {
						t.Errorf("attempt %d came %v after the previous at +%v, want at most %v", i+1, gap, prev.Sub(t0), limit)
					}
				}
			})
		}
	}
}

func offsets(ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, at := range ts {
		out[i] = at.Sub(t0)
	}
	return out
}

// TestStartJitterSpreadsDueRefreshes: a profile restored with a token it
// still serves but whose refresh is due is refreshed at once without a
// start jitter, and with one at a moment drawn within the jitter, but
// within the first half of the token's remaining servable life.
func TestStartJitterSpreadsDueRefreshes(t *testing.T) {
	due := cache.Record{Profile: "ci", TokenType: "Bearer", AccessToken: "secret-stored", IssuedAt: t0.Add(-50 * time.Minute),
		Expiry: t0.Add(10 * time.Minute), Fingerprint: "fp"}

	h := newHarness(t, withStartJitter(0))
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.c.Restore([]cache.Record{due})
	h.run()
	h.settle()
	if n := f.numCalls(); n != 1 {
		t.Fatalf("without a start jitter: %d fetches at start, want 1", n)
	}
	h.stopRun()

	// Half of the 9m50s the token is still served, under the 10m jitter.
	window := (10*time.Minute - 10*time.Second) / 2
	var first []time.Time
	for seed := range uint64(8) {
		h := newHarness(t, withSeed(seed), withStartJitter(startJitter))
		f := newFetcher(h.clk, "ci", time.Hour)
		h.c.SetProfiles([]cache.Profile{f.profile("fp")})
		h.c.Restore([]cache.Record{due})
		h.run()
		next := h.status("ci").NextRefresh
		if n := f.numCalls(); n != 0 || next.Before(t0) || !next.Before(t0.Add(window)) {
			t.Fatalf("seed %d: %d fetches, next refresh at +%v; want none yet, the refresh within [0, %v)", seed, n, next.Sub(t0), window)
		}
		if got := h.mustGet("ci"); got.AccessToken != due.AccessToken {
			t.Fatalf("seed %d: during the jitter Get served another token than the stored one", seed)
		}
		h.advanceTo(next)
		h.settle()
		if n := f.numCalls(); n != 1 {
			t.Fatalf("seed %d: %d fetches at the drawn moment, want 1", seed, n)
		}
		first = append(first, next)
		h.stopRun()
	}
	if slices.MinFunc(first, time.Time.Compare).Equal(slices.MaxFunc(first, time.Time.Compare)) {
		t.Errorf("every seed drew the same refresh moment +%v", first[0].Sub(t0))
	}
}
