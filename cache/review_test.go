package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
