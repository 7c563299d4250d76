package fleet

import (
	"fmt"
	"math"
	"time"

	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/token"
)

// limiter is the identity domain's rate limit on the token endpoint: a
// sliding window per second and per minute over the requests it lets
// through, exactly as emulator.Emulator applies it (TestLimiterMatchesEmulator
// holds the two to the same answers).
type limiter struct {
	limit    emulator.RateLimit
	admitted []time.Time // arrival times of admitted requests, oldest first
}

// admit reports whether a request arriving at now may proceed and, if not,
// how long until one could.
func (l *limiter) admit(now time.Time) (ok bool, wait time.Duration) {
	lim := l.limit
	if lim.PerSecond <= 0 && lim.PerMinute <= 0 {
		return true, 0
	}
	window := time.Second
	if lim.PerMinute > 0 {
		window = time.Minute
	}
	i := 0
	for i < len(l.admitted) && !l.admitted[i].After(now.Add(-window)) {
		i++
	}
	l.admitted = l.admitted[i:]
	n := len(l.admitted)
	if lim.PerMinute > 0 && n >= lim.PerMinute {
		wait = max(wait, l.admitted[n-lim.PerMinute].Add(time.Minute).Sub(now))
	}
	if lim.PerSecond > 0 && n >= lim.PerSecond {
		if oldest := l.admitted[n-lim.PerSecond]; oldest.After(now.Add(-time.Second)) {
			wait = max(wait, oldest.Add(time.Second).Sub(now))
		}
	}
	if wait > 0 {
		return false, wait
	}
	l.admitted = append(l.admitted, now)
	return true, 0
}

// retryAfterSeconds rounds d up to the whole seconds a Retry-After header
// carries, at least one, as the emulator does.
func retryAfterSeconds(d time.Duration) time.Duration {
	return time.Duration(max(1, int64(math.Ceil(d.Seconds())))) * time.Second
}

// outcome is how the endpoint answered one request.
type outcome uint8

const (
	issued      outcome = iota // 200 with a token
	refused                    // 429, over the rate limit
	unavailable                // 503, the domain is down
)

// endpoint is the simulated token endpoint of one identity domain. It
// answers instantly in simulated time and is called only from the
// simulation's goroutine, in host order within one instant.
type endpoint struct {
	limiter  limiter
	lifetime time.Duration
	// outageFrom and outageTo bound the outage: every request in
	// [outageFrom, outageTo) fails with 503 and does not count towards the
	// rate limit (the emulator does the same for faulted requests).
	outageFrom, outageTo time.Time
	// outageRetryAfter is the Retry-After of the 503s; 0: none.
	outageRetryAfter time.Duration
	serial           int
}

// reply is the endpoint's answer to one request.
type reply struct {
	tok     *token.Token
	err     error
	outcome outcome
}

// answer answers a token request from host at now.
func (e *endpoint) answer(now time.Time, host int) reply {
	if !now.Before(e.outageFrom) && now.Before(e.outageTo) {
		return reply{err: &oauth.Error{
			StatusCode:  503,
			Code:        oauth.CodeTemporarilyUnavail,
			Description: "identity domain unavailable",
			Retryable:   true,
			RetryAfter:  e.outageRetryAfter,
		}, outcome: unavailable}
	}
	if ok, wait := e.limiter.admit(now); !ok {
		err := &oauth.Error{
			StatusCode:  429,
			Code:        oauth.CodeTemporarilyUnavail,
			Description: "rate limit exceeded",
			Retryable:   true,
		}
		if e.limiter.limit.RetryAfter {
			err.RetryAfter = retryAfterSeconds(wait)
		}
		return reply{err: err, outcome: refused}
	}
	e.serial++
	return reply{tok: &token.Token{
		AccessToken: fmt.Sprintf("host%d.%d", host, e.serial),
		TokenType:   "Bearer",
		IssuedAt:    now,
		Expiry:      now.Add(e.lifetime),
	}, outcome: issued}
}
