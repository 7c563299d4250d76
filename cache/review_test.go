package cache_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/oauth"
)

// The tests of this file come from a review of the cache's scheduling and
// persistence; each failed before the fix committed with it.

// TestLongLivedTokenIsNotRefreshedAtOnce: an imported token that lives
// longer than about 146 years (a console token file may say so) is
// refreshed after 2/3 of its life, like any other, not at once: the
// refresh time's 2·L must not overflow a time.Duration.
func TestLongLivedTokenIsNotRefreshedAtOnce(t *testing.T) {
	const year = 365 * 24 * time.Hour
	for _, l := range []time.Duration{24 * time.Hour, 150 * year, 200 * year, time.Duration(1<<63 - 1)} {
		t.Run(l.String(), func(t *testing.T) {
			h := newHarness(t)
			f := newFetcher(h.clk, "ci", time.Hour)
			h.c.SetProfiles([]cache.Profile{f.profile("fp")})
			tok := &oauth.Token{AccessToken: secretMark + "imported", TokenType: "Bearer", IssuedAt: t0, Expiry: t0.Add(l)}
			if err := h.c.Import("ci", tok); err != nil {
				t.Fatal(err)
			}
			h.run()
			if n := f.numCalls(); n != 0 {
				t.Errorf("%d fetches at start, want none: the imported token is fresh", n)
			}
			// Without the margin binding, the refresh falls within
			// 2/3·L ± L/10 of the issue, so after half the life and
			// before the latest refresh at 9/10·L.
			next := h.status("ci").NextRefresh
			if lo, hi := t0.Add(l/2), t0.Add(l/10*9); next.Before(lo) || next.After(hi) {
				t.Errorf("next refresh at +%v, want within [+%v, +%v]", next.Sub(t0), lo.Sub(t0), hi.Sub(t0))
			}
		})
	}
}

// monoFetcher issues tokens whose times come from time.Now, as the token
// client's do, so that they carry Go's monotonic clock reading.
type monoFetcher struct{}

func (monoFetcher) Fetch(context.Context, string) (*oauth.Token, error) {
	now := time.Now()
	return &oauth.Token{AccessToken: secretMark + "mono", TokenType: "Bearer", IssuedAt: now, Expiry: now.Add(time.Hour)}, nil
}

// TestExpiryIsJudgedByTheWallClock: a token's expiry is a wall time, and
// the cache keeps no monotonic clock reading in it. Go's monotonic clock
// stops while the machine is suspended, so a reading kept in the expiry
// would make time.Now().Before(expiry) compare monotonic readings and
// serve a token after a suspend longer than its remaining life.
func TestExpiryIsJudgedByTheWallClock(t *testing.T) {
	h := newHarness(t)
	h.c.SetProfiles([]cache.Profile{{Name: "ci", Fingerprint: "fp", Fetcher: monoFetcher{}, CanFetch: true}})
	h.run()
	tok := h.mustGet("ci")
	st := h.status("ci")
	for what, v := range map[string]time.Time{
		"served token's Expiry": tok.Expiry, "served token's IssuedAt": tok.IssuedAt,
		"status ExpiresAt": st.ExpiresAt, "status NextRefresh": st.NextRefresh,
	} {
		if strings.Contains(v.String(), " m=") {
			t.Errorf("%s %v carries a monotonic clock reading", what, v)
		}
	}
}

// lateFetcher answers as a token endpoint does whose answer arrives late
// in the token's life: the token was issued (the request sent) age ago and
// lives lifetime from then.
type lateFetcher struct {
	h             *harness
	age, lifetime time.Duration
}

func (f lateFetcher) Fetch(context.Context, string) (*oauth.Token, error) {
	issued := f.h.clk.Now().Add(-f.age)
	return &oauth.Token{AccessToken: secretMark + "late", TokenType: "Bearer", IssuedAt: issued, Expiry: issued.Add(f.lifetime)}, nil
}

// TestGetNeverReturnsATokenPastItsServingMargin: a fetch whose token
// arrives within its serving margin (a 60s token whose answer took 55s:
// 5s left, the margin is 6s) is not handed to the callers waiting for it,
// as Held and the next Get would not serve it either; and it counts as a
// failure, so that the next Gets wait for the backoff instead of each
// sending another token request.
func TestGetNeverReturnsATokenPastItsServingMargin(t *testing.T) {
	h := newHarness(t)
	f := &countingFetcher{f: lateFetcher{h: h, age: 55 * time.Second, lifetime: time.Minute}}
	h.c.SetProfiles([]cache.Profile{{Name: "ci", Fingerprint: "fp", Fetcher: f, CanFetch: true}})
	for i := range 5 {
		tok, err := h.c.Get(context.Background(), "ci")
		if err == nil {
			if _, held := h.c.Held("ci"); !held {
				t.Fatalf("Get %d returned a token expiring at %v (now %v) that the cache does not serve", i, tok.Expiry, h.clk.Now())
			}
		}
	}
	if n := f.numCalls(); n != 1 {
		t.Errorf("5 Gets made %d token requests, want 1 and a backoff", n)
	}
	if s := h.status("ci"); s.State != cache.StateFailing || !strings.Contains(s.LastError, "too soon to serve") {
		t.Errorf("status = %+v, want failing with the token's expiry", s)
	}
}

// countingFetcher counts the calls to f.
type countingFetcher struct {
	f     cache.Fetcher
	mu    sync.Mutex
	calls int
}

func (c *countingFetcher) Fetch(ctx context.Context, rt string) (*oauth.Token, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.f.Fetch(ctx, rt)
}

func (c *countingFetcher) numCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// TestImportRefusesATokenItWouldNotServe: Import refuses a token that is
// valid but already within its serving margin (here 5s left of an hour,
// margin 10s), as it refuses an expired one, instead of dropping the
// token held for one that no Get would ever serve.
func TestImportRefusesATokenItWouldNotServe(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	h.run()
	held := h.mustGet("ci")
	late := &oauth.Token{AccessToken: secretMark + "late", TokenType: "Bearer",
		IssuedAt: t0.Add(-time.Hour + 5*time.Second), Expiry: t0.Add(5 * time.Second)}
	if err := h.c.Import("ci", late); err == nil || !strings.Contains(err.Error(), "too soon to serve") {
		t.Errorf("Import of a token 5s from its expiry = %v, want an error", err)
	}
	if tok, ok := h.c.Held("ci"); !ok || tok.AccessToken != held.AccessToken {
		t.Errorf("after the refused import Held = %v, %v; want the token held before", tok, ok)
	}
	if rec, _ := h.store.record("ci"); rec.AccessToken != held.AccessToken {
		t.Error("the refused token was stored")
	}
}

// TestGetHonoursRetryAfterAfterImport: Import resets the backoff but not a
// server's Retry-After (package comment), and the scheduler waits for it.
// A Get after the imported token lapsed must wait for it too, instead of
// sending the token request the server asked not to receive.
func TestGetHonoursRetryAfterAfterImport(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", time.Hour)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})
	f.setFail(failAlways(&oauth.Error{StatusCode: 429, Retryable: true, RetryAfter: 10 * time.Minute}))
	if _, err := h.c.Get(context.Background(), "ci"); err == nil {
		t.Fatal("Get succeeded; want the 429")
	}
	imported := &oauth.Token{AccessToken: secretMark + "imported", TokenType: "Bearer", Expiry: t0.Add(2 * time.Minute)}
	if err := h.c.Import("ci", imported); err != nil {
		t.Fatal(err)
	}
	f.setFail(nil)
	h.run()
	h.advance(3 * time.Minute)
	if _, err := h.c.Get(context.Background(), "ci"); err == nil || !strings.Contains(err.Error(), "asked to wait until 2026-11-25T12:10:00Z") {
		t.Errorf("Get at +3m = %v, want an error naming the Retry-After", err)
	}
	if _, err := h.c.Refresh(context.Background(), "ci"); err == nil || !strings.Contains(err.Error(), "asked to wait") {
		t.Errorf("Refresh at +3m = %v, want an error naming the Retry-After", err)
	}
	if n := f.numCalls(); n != 1 {
		t.Errorf("token requests before the Retry-After = %d, want 1", n)
	}
	h.advance(8 * time.Minute)
	if n := f.numCalls(); n != 2 {
		t.Errorf("token requests at the Retry-After = %d, want 2 (the scheduler's)", n)
	}
	h.mustGet("ci")
}

// TestClockStepBackKeepsWaitsShort: a backoff, a server's Retry-After and
// a start jitter are durations. When the wall clock steps back an hour
// during one, the attempt still comes once that duration has passed, not
// an hour later: before, the profile waited the step out, with Get
// refusing to fetch all along.
func TestClockStepBackKeepsWaitsShort(t *testing.T) {
	tests := []struct {
		name string
		opts []harnessOption
		err  error // the first fetch's error, nil: none
		wait time.Duration
	}{
		{"backoff", nil, errUnavailable, time.Second},
		{"Retry-After", nil, &oauth.Error{StatusCode: 503, Retryable: true, RetryAfter: time.Minute}, time.Minute},
		{"start jitter", []harnessOption{withStartJitter(time.Minute)}, nil, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts...)
			f := newFetcher(h.clk, "ci", time.Hour)
			h.c.SetProfiles([]cache.Profile{f.profile("fp")})
			if tt.err != nil {
				f.setFail(func(n int) error {
					if n == 1 {
						return tt.err
					}
					return nil
				})
			}
			h.run()
			calls := f.numCalls()
			h.clk.Step(-time.Hour)
			h.advance(tt.wait)
			if n := f.numCalls(); n != calls+1 {
				t.Fatalf("token requests in the %v after the step back = %d, want 1; status %+v", tt.wait, n-calls, h.status("ci"))
			}
			h.mustGet("ci")
		})
	}
}

// fetcherFunc is a Fetcher made of a function.
type fetcherFunc func(ctx context.Context, refreshToken string) (*oauth.Token, error)

func (f fetcherFunc) Fetch(ctx context.Context, refreshToken string) (*oauth.Token, error) {
	return f(ctx, refreshToken)
}

// TestRefusedLateTokenKeepsItsRefreshToken: a token that arrives too late
// to serve is refused, but the server has issued it, and with it, when it
// rotates refresh tokens, the only refresh token that still works. The
// next attempt uses that one: an import-only profile would otherwise be
// left with a spent refresh token and no way to fetch.
func TestRefusedLateTokenKeepsItsRefreshToken(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var used []string
	f := fetcherFunc(func(_ context.Context, rt string) (*oauth.Token, error) {
		mu.Lock()
		defer mu.Unlock()
		used = append(used, rt)
		now := h.clk.Now()
		tok := &oauth.Token{AccessToken: fmt.Sprintf("%saccess-%d", secretMark, len(used)), TokenType: "Bearer",
			RefreshToken: fmt.Sprintf("%srefresh-%d", secretMark, len(used)), IssuedAt: now, Expiry: now.Add(time.Hour)}
		if len(used) == 1 { // a 60s token whose answer took 55s
			tok.IssuedAt, tok.Expiry = now.Add(-55*time.Second), now.Add(5*time.Second)
		}
		return tok, nil
	})
	h.c.SetProfiles([]cache.Profile{{Name: "console", Fingerprint: "fp", Fetcher: f}})
	imported := &oauth.Token{AccessToken: secretMark + "imported", TokenType: "Bearer",
		RefreshToken: secretMark + "imported-refresh", IssuedAt: t0.Add(-50 * time.Minute), Expiry: t0.Add(10 * time.Minute)}
	if err := h.c.Import("console", imported); err != nil {
		t.Fatal(err)
	}
	h.run()                // the imported token is due: the refresh arrives too late
	h.advance(time.Minute) // the retry
	mu.Lock()
	got := append([]string(nil), used...)
	mu.Unlock()
	want := []string{secretMark + "imported-refresh", secretMark + "refresh-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refresh tokens passed to the fetcher (-want +got):\n%s", diff)
	}
	if tok := h.mustGet("console"); tok.AccessToken != secretMark+"access-2" {
		t.Errorf("Get = %s, want the retry's token", tok.AccessToken)
	}
}
