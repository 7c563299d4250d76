package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/cache/clocktest"
)

// TestHeld shows that Held answers exactly when Get would serve without
// waiting: the same token while one is servable, nothing for an unknown
// profile, before the first fetch, past the serving margin and after
// Forget, and that it never starts a fetch.
func TestHeld(t *testing.T) {
	h := newHarness(t)
	f := newFetcher(h.clk, "ci", 5*time.Second)
	h.c.SetProfiles([]cache.Profile{f.profile("fp")})

	check := func(when string, want string) {
		t.Helper()
		before := h.fetchesStarted()
		tok, ok := h.c.Held("ci")
		switch {
		case want == "" && (ok || tok != nil):
			t.Errorf("%s: Held = %v, %v; want nothing", when, tok, ok)
		case want != "" && (!ok || tok == nil || tok.AccessToken != want):
			t.Errorf("%s: Held = %v, %v; want %s", when, tok, ok, want)
		case ok && tok.RefreshToken != "":
			t.Errorf("%s: Held handed out the refresh token", when)
		}
		if got := h.fetchesStarted(); got != before {
			t.Errorf("%s: Held started %d fetches, want 0", when, got-before)
		}
	}

	check("before any fetch", "")
	if tok, ok := h.c.Held("nosuch"); ok || tok != nil {
		t.Errorf("Held(nosuch) = %v, %v; want nothing", tok, ok)
	}
	h.run()
	check("after the first fetch", "secret-access-ci-1")
	if got := h.mustGet("ci"); got.AccessToken != "secret-access-ci-1" {
		t.Fatalf("Get = %s, want the token Held returned", got.AccessToken)
	}

	// The copy is the caller's: changing it changes nothing held.
	tok, _ := h.c.Held("ci")
	tok.AccessToken = "changed"
	check("after the caller changed its copy", "secret-access-ci-1")

	// Served until min(10s, L/10) = 0.5s before expiry; the scheduler
	// refreshes a 5 s token before then, so stop it from succeeding.
	f.setFail(failAlways(errUnavailable))
	h.advance(4499 * time.Millisecond)
	check("at 4.499s", "secret-access-ci-1")
	h.advance(time.Millisecond)
	check("at 4.5s, past the serving margin", "")

	f.setFail(nil)
	if _, err := h.c.Refresh(context.Background(), "ci"); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	h.settle()
	tok, ok := h.c.Held("ci")
	if !ok {
		t.Fatal("Held after Refresh: nothing")
	}
	// A running cache fetches again at once after Forget; that fetch
	// fails here, so that what Held answers does not depend on whether it
	// finished first.
	f.setFail(failAlways(errUnavailable))
	if err := h.c.Forget("ci"); err != nil {
		t.Fatal(err)
	}
	if got, ok := h.c.Held("ci"); ok {
		t.Errorf("Held after Forget = %s, want nothing (was %s)", got.AccessToken, tok.AccessToken)
	}
}

// BenchmarkHeld is the cost of the socket server's fast path into the
// cache, against Get's for the same held token.
func BenchmarkHeld(b *testing.B) {
	clk := clocktest.New(t0)
	c := cache.New(cache.Options{Clock: clk})
	c.SetProfiles([]cache.Profile{newFetcher(clk, "ci", time.Hour).profile("fp")})
	if _, err := c.Get(context.Background(), "ci"); err != nil {
		b.Fatal(err)
	}
	b.Run("Held", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.Held("ci"); !ok {
				b.Fatal("not held")
			}
		}
	})
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Get(context.Background(), "ci"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
