package cache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tokd/tokd/oauth"
)

var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// almostOne is the largest jitter draw the tests use.
const almostOne = 1 - 1e-12

func TestRefreshTimeWithinJitterBounds(t *testing.T) {
	p := newPolicy(Options{})
	for _, l := range []time.Duration{time.Second, 5 * time.Second, 60 * time.Second, 100 * time.Second,
		5 * time.Minute, time.Hour, 24 * time.Hour, 365 * 24 * time.Hour} {
		t.Run(l.String(), func(t *testing.T) {
			issued := epoch
			expiry := issued.Add(l)
			// Past the margin, the refresh comes within L/10 before it.
			latest := expiry.Add(-min(max(30*time.Second, l/10), l/2))
			lo := issued.Add(2*l/3 - l/10)
			hi := issued.Add(2*l/3 + l/10)
			if lo.After(latest.Add(-l / 10)) {
				lo = latest.Add(-l / 10)
			}
			if hi.After(latest) {
				hi = latest
			}
			served := expiry.Add(-min(10*time.Second, l/10))
			var early, late bool
			for seed := range uint64(5000) {
				r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Float64()
				at := p.refreshTime(issued, expiry, r)
				if at.Before(lo) || at.After(hi) {
					t.Fatalf("seed %d (r=%v): refresh at +%v, want within [+%v, +%v]", seed, r, at.Sub(issued), lo.Sub(issued), hi.Sub(issued))
				}
				if !at.Before(served) {
					t.Fatalf("seed %d: refresh at +%v, not before the token stops being served at +%v", seed, at.Sub(issued), served.Sub(issued))
				}
				mid := issued.Add(2 * l / 3)
				early = early || at.Before(mid)
				late = late || at.After(mid)
			}
			if hi.After(issued.Add(2*l/3)) && !(early && late) {
				t.Errorf("jitter not applied on both sides of 2/3 L: early %v, late %v", early, late)
			}
		})
	}
}

func TestRefreshTimeMargin(t *testing.T) {
	p := newPolicy(Options{})
	tests := []struct {
		name     string
		lifetime time.Duration
		r        float64
		want     time.Duration // after issue
	}{
		{"1h middle", time.Hour, 0.5, 40 * time.Minute},
		{"1h earliest", time.Hour, 0, 34 * time.Minute},
		{"1h latest, margin L/10 does not bind", time.Hour, almostOne, 46 * time.Minute},
		{"1 year, margin L/10", 365 * 24 * time.Hour, almostOne, 365 * 24 * time.Hour * 23 / 30},
		{"100s earliest", 100 * time.Second, 0, 100*time.Second*2/3 - 10*time.Second},
		{"100s, just within the 30s margin", 100 * time.Second, 0.66, 100*time.Second*2/3 + 3200*time.Millisecond},
		{"100s, past the 30s margin: jittered below it", 100 * time.Second, 0.7, 63 * time.Second},
		{"100s latest, past the 30s margin", 100 * time.Second, almostOne, 60 * time.Second},
		{"60s, draw 0: at the 30s margin", 60 * time.Second, 0, 30 * time.Second},
		{"60s, draw 1/2: L/20 below the margin", 60 * time.Second, 0.5, 27 * time.Second},
		{"60s latest: L/10 below the margin", 60 * time.Second, almostOne, 24 * time.Second},
		{"5s, margin capped at L/2", 5 * time.Second, 0.5, 2250 * time.Millisecond},
		{"1s, margin capped at L/2", time.Second, 0, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.refreshTime(epoch, epoch.Add(tt.lifetime), tt.r).Sub(epoch)
			if diff := (got - tt.want).Abs(); diff > time.Millisecond {
				t.Errorf("refresh at +%v, want +%v", got, tt.want)
			}
		})
	}
}

// TestRefreshTimeSpreadsPastTheMargin: when the margin binds for every
// draw (L <= 69 s), tokens of one lifetime issued together are still
// refreshed over L/10 below the margin, not all at the margin.
func TestRefreshTimeSpreadsPastTheMargin(t *testing.T) {
	p := newPolicy(Options{})
	for _, l := range []time.Duration{10 * time.Second, 60 * time.Second, 69 * time.Second} {
		latest := l - min(max(30*time.Second, l/10), l/2)
		rng := rand.New(rand.NewPCG(3, 4))
		var low, high bool
		for range 1000 {
			at := p.refreshTime(epoch, epoch.Add(l), rng.Float64()).Sub(epoch)
			if at > latest || at <= latest-l/10 {
				t.Fatalf("L=%v: refresh at +%v, want within (+%v, +%v]", l, at, latest-l/10, latest)
			}
			low = low || at < latest-l/20
			high = high || at > latest-l/20
		}
		if !low || !high {
			t.Errorf("L=%v: refreshes do not spread over the L/10 below the margin", l)
		}
	}
}

func TestServeMarginBelowRefreshMargin(t *testing.T) {
	p := newPolicy(Options{})
	for l := time.Second; l < 400*24*time.Hour; l = l * 3 / 2 {
		if s, r := p.serveMargin(l), p.refreshMargin(l); s > r || r >= l {
			t.Errorf("L=%v: serve margin %v, refresh margin %v; want serve <= refresh < L", l, s, r)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	p := newPolicy(Options{})
	unavailable := &oauth.Error{StatusCode: 503, Description: "service unavailable", Retryable: true}
	slowDown := &oauth.Error{StatusCode: 429, Description: "too many requests", Retryable: true, RetryAfter: 90 * time.Second}
	invalidGrant := &oauth.Error{StatusCode: 400, Code: oauth.CodeInvalidGrant, Description: "refresh token revoked"}
	invalidClientLongWait := &oauth.Error{StatusCode: 401, Code: oauth.CodeInvalidClient, RetryAfter: time.Hour}
	rateLimited := &oauth.Error{StatusCode: 429, Description: "too many requests", Retryable: true}
	rateLimitedShortWait := &oauth.Error{StatusCode: 429, Retryable: true, RetryAfter: 2 * time.Second}
	tests := []struct {
		name     string
		failures int
		err      error
		r        float64
		served   time.Duration // the held token's remaining servable life; 0: none
		want     time.Duration
	}{
		{"1st failure, top of range", 1, unavailable, almostOne, 0, time.Second},
		{"2nd failure, top of range", 2, unavailable, almostOne, 0, 2 * time.Second},
		{"3rd failure, middle", 3, unavailable, 0.5, 0, 2 * time.Second},
		{"9th failure, top of range", 9, unavailable, almostOne, 0, 256 * time.Second},
		{"10th failure, capped", 10, unavailable, almostOne, 0, 5 * time.Minute},
		{"100th failure, capped", 100, unavailable, almostOne, 0, 5 * time.Minute},
		{"zero draw, floor", 5, unavailable, 0, 0, 250 * time.Millisecond},
		{"Retry-After above the backoff", 1, slowDown, almostOne, 0, 90 * time.Second},
		{"backoff above Retry-After", 20, slowDown, almostOne, 0, 5 * time.Minute},
		{"error without oauth type is retryable", 3, errors.New("dial tcp: connection refused"), almostOne, 0, 4 * time.Second},
		{"wrapped oauth error keeps its class", 1, fmt.Errorf("fetch: %w", invalidGrant), 0, 0, 15 * time.Minute},
		{"permanent, zero draw", 1, invalidGrant, 0, 0, 15 * time.Minute},
		{"permanent, top of range", 7, invalidGrant, almostOne, 0, 16*time.Minute + 30*time.Second},
		{"permanent with a longer Retry-After", 1, invalidClientLongWait, 0.5, 0, time.Hour},

		{"429, 1st failure: ceiling 1 min", 1, rateLimited, almostOne, 0, time.Minute},
		{"429, 2nd failure: ceiling 2 min", 2, rateLimited, 0.5, 0, time.Minute},
		{"429, 4th failure: capped", 4, rateLimited, almostOne, 0, 5 * time.Minute},
		{"429, zero draw, floor", 1, rateLimited, 0, 0, 250 * time.Millisecond},
		{"429 wrapped", 1, fmt.Errorf("fetch: %w", rateLimited), almostOne, 0, time.Minute},
		{"429 with a Retry-After below the backoff", 1, rateLimitedShortWait, 0.5, 0, 30 * time.Second},
		{"429 with a Retry-After above the backoff", 1, rateLimitedShortWait, 0.01, 0, 2 * time.Second},
		{"503 is not a rate limit", 1, unavailable, 0.5, 0, 500 * time.Millisecond},

		{"cap: half the served life", 10, unavailable, almostOne, 4 * time.Minute, 2 * time.Minute},
		{"cap above the backoff: no effect", 3, unavailable, almostOne, time.Hour, 4 * time.Second},
		{"cap: at least 1s", 10, unavailable, almostOne, 500 * time.Millisecond, time.Second},
		{"cap does not raise a short delay", 10, unavailable, 0, 500 * time.Millisecond, 250 * time.Millisecond},
		{"cap applies to 429", 3, rateLimited, almostOne, 3 * time.Minute, 90 * time.Second},
		{"cap never before Retry-After", 1, slowDown, almostOne, 20 * time.Second, 90 * time.Second},
		{"cap does not apply to permanent errors", 1, invalidGrant, 0, time.Minute, 15 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.retryDelay(tt.failures, tt.err, tt.r, tt.served)
			if diff := (got - tt.want).Abs(); diff > time.Millisecond {
				t.Errorf("retryDelay(%d, %v, %v, %v) = %v, want %v", tt.failures, tt.err, tt.r, tt.served, got, tt.want)
			}
		})
	}
}

func TestRateLimitBackoffOption(t *testing.T) {
	rateLimited := &oauth.Error{StatusCode: 429, Retryable: true}
	for _, tt := range []struct {
		name string
		opts Options
		want time.Duration // ceiling of the first retry
	}{
		{"default", Options{}, time.Minute},
		{"set", Options{RateLimitBackoff: 10 * time.Second}, 10 * time.Second},
		{"never below BaseBackoff", Options{BaseBackoff: 2 * time.Minute, RateLimitBackoff: 10 * time.Second}, 2 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := newPolicy(tt.opts).retryDelay(1, rateLimited, almostOne, 0); (got - tt.want).Abs() > time.Millisecond {
				t.Errorf("first retry after a 429 = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetryDelayFullJitterRange(t *testing.T) {
	p := newPolicy(Options{})
	err := errors.New("connection reset")
	rng := rand.New(rand.NewPCG(7, 7))
	for n := 1; n <= 15; n++ {
		ceiling := min(time.Second<<(n-1), 5*time.Minute)
		var lowHalf, highHalf bool
		for range 2000 {
			d := p.retryDelay(n, err, rng.Float64(), 0)
			if d < 250*time.Millisecond || d > ceiling {
				t.Fatalf("failure %d: delay %v outside [250ms, %v]", n, d, ceiling)
			}
			lowHalf = lowHalf || d < ceiling/2
			highHalf = highHalf || d > ceiling/2
		}
		if !lowHalf || !highHalf {
			t.Errorf("failure %d: delays do not spread over [0, %v]", n, ceiling)
		}
	}
}

// TestRetryDelayFleetCeiling: with a StartJitter, the retry ceiling is
// max(StartJitter, RateLimitBackoff) instead of MaxBackoff; once the
// doubling reaches RateLimitBackoff (an outage, not a blip) a delay is
// drawn at the ceiling with equal jitter, in [3C/4, C); a 429 is drawn
// over min(C, max(RateLimitBackoff, served/4)) whatever came before it.
// Below the minute, and without a StartJitter, full jitter as before. The
// cap by the held token's life and the Retry-After floor stay.
func TestRetryDelayFleetCeiling(t *testing.T) {
	unavailable := &oauth.Error{StatusCode: 503, Retryable: true}
	slowDown := &oauth.Error{StatusCode: 503, Retryable: true, RetryAfter: 20 * time.Minute}
	rateLimited := &oauth.Error{StatusCode: 429, Retryable: true}
	c := 8*time.Minute + 40*time.Second
	fleet := newPolicy(Options{StartJitter: c})
	small := newPolicy(Options{StartJitter: 10 * time.Second})
	single := newPolicy(Options{})
	tests := []struct {
		name     string
		p        policy
		failures int
		err      error
		r        float64
		served   time.Duration
		want     time.Duration
	}{
		{"below the minute: full jitter", fleet, 3, unavailable, 0, 0, 250 * time.Millisecond},
		{"6th failure, 32s: still full jitter", fleet, 6, unavailable, almostOne, 0, 32 * time.Second},
		{"7th failure, 64s: the ceiling, bottom", fleet, 7, unavailable, 0, 0, c * 3 / 4},
		{"at the ceiling: equal jitter, top", fleet, 100, unavailable, almostOne, 0, c},
		{"cap: 95% of the served life", fleet, 100, unavailable, 0, 4 * time.Minute, 4 * time.Minute * 19 / 20},
		{"single host cap: half the served life", single, 100, unavailable, almostOne, 4 * time.Minute, 2 * time.Minute},
		{"Retry-After floor stays", fleet, 100, slowDown, almostOne, 0, 20 * time.Minute},
		{"ceiling at least RateLimitBackoff", small, 100, unavailable, 0, 0, 45 * time.Second},
		{"429, no token: one minute", fleet, 12, rateLimited, almostOne, 0, time.Minute},
		{"429, zero draw: floor", fleet, 12, rateLimited, 0, 0, 250 * time.Millisecond},
		{"429, 12 min served: a quarter of it", fleet, 1, rateLimited, almostOne, 12 * time.Minute, 3 * time.Minute},
		{"429, 20 min served: half the ceiling", fleet, 1, rateLimited, almostOne, 20 * time.Minute, c / 2},
		{"429, 50 min served: half the ceiling", fleet, 1, rateLimited, 0.5, 50 * time.Minute, c / 4},
		{"429, 40s served: the cap", fleet, 1, rateLimited, almostOne, 40 * time.Second, 38 * time.Second},
		{"no StartJitter: 5 min, full jitter", single, 100, unavailable, 0, 0, 250 * time.Millisecond},
		{"no StartJitter: top", single, 100, unavailable, almostOne, 0, 5 * time.Minute},
		{"no StartJitter: 429 grows", single, 3, rateLimited, almostOne, 20 * time.Minute, 4 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.retryDelay(tt.failures, tt.err, tt.r, tt.served); (got - tt.want).Abs() > time.Millisecond {
				t.Errorf("retryDelay(%d, %v, %v, %v) = %v, want %v", tt.failures, tt.err, tt.r, tt.served, got, tt.want)
			}
		})
	}
}

// TestRetryDelayNeverWraps: retryDelay's doubling and the permanent
// retry's jitter never overflow a time.Duration, whatever the Options: a
// wrapped product read as a delay of a few milliseconds (or a negative
// one) and turned the longest waits into the shortest.
func TestRetryDelayNeverWraps(t *testing.T) {
	const forever = time.Duration(1<<63 - 1)
	unavailable := &oauth.Error{StatusCode: 503, Retryable: true}
	invalidGrant := &oauth.Error{StatusCode: 400, Code: oauth.CodeInvalidGrant}
	for _, o := range []Options{
		{},
		{BaseBackoff: 1<<40 + 1, MaxBackoff: forever}, // (2^40+1)<<24 wraps to 16ms
		{BaseBackoff: 3, MaxBackoff: forever},
		{BaseBackoff: time.Hour, MaxBackoff: forever},
		{BaseBackoff: 1<<62 + 1, MaxBackoff: forever},
	} {
		p := newPolicy(o)
		prev := time.Duration(0)
		for failures := 1; failures <= 100; failures++ {
			d := p.retryDelay(failures, unavailable, almostOne, 0)
			if d < prev || d > p.maxBackoff {
				t.Fatalf("BaseBackoff %v, MaxBackoff %v: failure %d waits up to %v, failure %d up to %v",
					o.BaseBackoff, o.MaxBackoff, failures-1, prev, failures, d)
			}
			prev = d
		}
	}
	for _, retry := range []time.Duration{time.Hour, forever / 2, forever} {
		p := newPolicy(Options{PermanentRetry: retry})
		for _, r := range []float64{0, 0.5, almostOne} {
			if d := p.retryDelay(1, invalidGrant, r, 0); d < retry {
				t.Errorf("PermanentRetry %v, draw %v: delay %v, want at least PermanentRetry", retry, r, d)
			}
		}
	}
}
