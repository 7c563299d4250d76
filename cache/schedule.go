package cache

import (
	"errors"
	"math"
	"time"

	"github.com/tokd/tokd/token"
)

// Defaults of the Options durations; the package comment explains them.
const (
	DefaultMinMargin          = 30 * time.Second
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultExpirySkew         = 10 * time.Second
	DefaultBaseBackoff        = 1 * time.Second
	DefaultRateLimitBackoff   = 1 * time.Minute
	DefaultMaxBackoff         = 5 * time.Minute
	DefaultPermanentRetry     = 15 * time.Minute
	DefaultFetchTimeout       = 1 * time.Minute
)

// minRetryDelay is the shortest wait after a failure, so that a jitter draw
// of zero never turns into an immediate retry.
const minRetryDelay = 250 * time.Millisecond

// minServedRetryCap is the shortest that the cap of half the held token's
// remaining servable life makes a retry delay.
const minServedRetryCap = 1 * time.Second

// policy holds the timing rules, with defaults filled in.
type policy struct {
	minMargin          time.Duration
	minRefreshInterval time.Duration
	expirySkew         time.Duration
	baseBackoff        time.Duration
	rateLimitBackoff   time.Duration
	maxBackoff         time.Duration
	permanentRetry     time.Duration
	// fleetCeiling, when positive, replaces maxBackoff as the retry
	// ceiling and draws the delays that reach it with equal jitter:
	// max(StartJitter, rateLimitBackoff) for a cache with a StartJitter,
	// zero without one.
	fleetCeiling time.Duration
}

func newPolicy(o Options) policy {
	def := func(d, v time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	p := policy{
		minMargin:          def(DefaultMinMargin, o.MinMargin),
		minRefreshInterval: def(DefaultMinRefreshInterval, o.MinRefreshInterval),
		expirySkew:         def(DefaultExpirySkew, o.ExpirySkew),
		baseBackoff:        def(DefaultBaseBackoff, o.BaseBackoff),
		rateLimitBackoff:   def(DefaultRateLimitBackoff, o.RateLimitBackoff),
		maxBackoff:         def(DefaultMaxBackoff, o.MaxBackoff),
		permanentRetry:     def(DefaultPermanentRetry, o.PermanentRetry),
	}
	p.rateLimitBackoff = max(p.rateLimitBackoff, p.baseBackoff)
	if o.StartJitter > 0 {
		p.fleetCeiling = max(o.StartJitter, p.rateLimitBackoff)
	}
	return p
}

// issuedAt returns the start of a token's lifetime: its IssuedAt, or
// received when IssuedAt is unknown or not before the expiry.
func issuedAt(t *token.Token, received time.Time) time.Time {
	if t.IssuedAt.IsZero() || !t.IssuedAt.Before(t.Expiry) {
		return received
	}
	return t.IssuedAt
}

// refreshMargin returns how long before expiry a token of lifetime l is
// refreshed at the latest: max(minMargin, l/10), capped at l/2.
func (p policy) refreshMargin(l time.Duration) time.Duration {
	return min(max(p.minMargin, l/10), l/2)
}

// serveMargin returns how long before expiry a token of lifetime l stops
// being served: min(expirySkew, l/10), and never less than zero. It never
// exceeds refreshMargin, so a healthy refresh always happens while the
// token is still served.
func (p policy) serveMargin(l time.Duration) time.Duration {
	return max(min(p.expirySkew, l/10), 0)
}

// serveUntil returns the wall time before which t, received at received,
// is served: its expiry less serveMargin of its lifetime. Any monotonic
// clock reading is dropped (see installLocked), so that a comparison with
// a time.Now reading is made in wall time.
func (p policy) serveUntil(t *token.Token, received time.Time) time.Time {
	wall := token.Token{IssuedAt: t.IssuedAt.Round(0), Expiry: t.Expiry.Round(0)}
	return wall.Expiry.Add(-p.serveMargin(wall.Expiry.Sub(issuedAt(&wall, received.Round(0)))))
}

// refreshTime returns when a token living from issued to expiry should be
// refreshed, for a jitter draw r in [0, 1): issued + 2/3·L + (2r-1)·L/10;
// but when that is later than latest = expiry - refreshMargin(L), then
// latest - r·L/10, so that the refreshes of tokens of one lifetime issued
// together still spread over L/10 when the margin binds (short tokens).
// The caller applies the minimum interval between refreshes.
func (p policy) refreshTime(issued, expiry time.Time, r float64) time.Time {
	l := expiry.Sub(issued)
	if l <= 0 {
		return issued
	}
	jitter := time.Duration((2*r - 1) * float64(l/10))
	// 2/3·L, exactly as 2*l/3 but without overflowing for L above 146 years.
	at := issued.Add(l/3*2 + l%3*2/3 + jitter)
	if latest := expiry.Add(-p.refreshMargin(l)); at.After(latest) {
		at = latest.Add(-time.Duration(r * float64(l/10)))
	}
	return at
}

// retryDelay returns how long to wait after the failures-th consecutive
// failure, err, for a jitter draw r in [0, 1), when the held token is
// served for served more (0: no token is served):
//
//   - retryable: full jitter, r·min(C, base·2^(failures-1)), at least
//     minRetryDelay, where base is rateLimitBackoff for a rate-limit
//     answer (429) and baseBackoff otherwise, and the ceiling C is
//     maxBackoff; but no more than served/2 (at least minServedRetryCap)
//     while a token is served;
//   - retryable with a fleet ceiling (a StartJitter): C is that ceiling;
//     once base·2^(failures-1) reaches rateLimitBackoff the delay is
//     drawn at the ceiling with equal jitter, C·3/4 + r·C/4; a 429 is
//     drawn r·min(C, max(rateLimitBackoff, served/4)) whatever the
//     failures before it; and the cap by served/2 stays;
//   - permanent: permanentRetry plus up to a tenth of it;
//
// and in both cases at least the server's Retry-After.
func (p policy) retryDelay(failures int, err error, r float64, served time.Duration) time.Duration {
	var d time.Duration
	switch {
	case !retryable(err):
		d = addDurations(p.permanentRetry, time.Duration(r*float64(p.permanentRetry/10)))
	case p.fleetCeiling > 0 && rateLimited(err):
		w := min(p.fleetCeiling/2, max(p.rateLimitBackoff, served/4))
		d = max(time.Duration(r*float64(w)), minRetryDelay)
	default:
		base := p.baseBackoff
		if rateLimited(err) {
			base = p.rateLimitBackoff
		}
		ceiling := p.maxBackoff
		if p.fleetCeiling > 0 {
			ceiling = p.fleetCeiling
		}
		reached := true
		// base·2^n stays below the ceiling, computed without overflowing:
		// a wrapped product could read as a delay of a few milliseconds.
		if n := max(failures, 1) - 1; n < 63 && base <= (ceiling-1)>>n {
			c := base << n
			if p.fleetCeiling == 0 || c < p.rateLimitBackoff {
				ceiling, reached = c, false
			}
		}
		if reached && p.fleetCeiling > 0 {
			d = ceiling - ceiling/4 + time.Duration(r*float64(ceiling/4))
		} else {
			d = max(time.Duration(r*float64(ceiling)), min(minRetryDelay, base))
		}
	}
	if served > 0 && retryable(err) {
		d = min(d, max(p.servedRetryCap(served), minServedRetryCap))
	}
	return max(d, retryAfter(err))
}

// servedRetryCap returns the longest a retry may wait while a token with
// served of servable life left is held: half of it, so that a single host
// tries twice more before the token runs out; with a fleet ceiling, 95% of
// it, so that the hosts whose tokens near their end during an outage do
// not all come back at once when it ends (package comment, "Failures").
func (p policy) servedRetryCap(served time.Duration) time.Duration {
	if p.fleetCeiling > 0 {
		return served - served/20
	}
	return served / 2
}

// retryable reports whether err may go away by itself: a token.RetryError
// (such as *oauth.Error) that says so, or any other error.
func retryable(err error) bool {
	var re token.RetryError
	if errors.As(err, &re) {
		return re.Temporary()
	}
	return true
}

// RateLimitError is implemented by errors that can tell a rate-limit answer
// (HTTP 429) from other failures; *oauth.Error does. The cache backs off
// from those with Options.RateLimitBackoff.
type RateLimitError interface {
	error
	// RateLimited reports whether the server refused the request for its
	// rate limit.
	RateLimited() bool
}

// rateLimited reports whether err says the server's rate limit refused
// the request.
func rateLimited(err error) bool {
	var re RateLimitError
	return errors.As(err, &re) && re.RateLimited()
}

// retryAfter returns the server's Retry-After carried by err, or 0.
func retryAfter(err error) time.Duration {
	var re token.RetryError
	if errors.As(err, &re) && re.RetryDelay() > 0 {
		return re.RetryDelay()
	}
	return 0
}

// addDurations returns a+b for non-negative a and b, or the longest
// Duration when the sum overflows.
func addDurations(a, b time.Duration) time.Duration {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// latest returns the latest of ts.
func latest(t time.Time, ts ...time.Time) time.Time {
	for _, u := range ts {
		if u.After(t) {
			t = u
		}
	}
	return t
}
