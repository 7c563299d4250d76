package fleet

import (
	"fmt"
	"math"
	"time"

	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/token"
)

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
	limiter  emulator.Limiter
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
	if ok, wait := e.limiter.Admit(now); !ok {
		err := &oauth.Error{
			StatusCode:  429,
			Code:        oauth.CodeTemporarilyUnavail,
			Description: "rate limit exceeded",
			Retryable:   true,
		}
		if e.limiter.Limit.RetryAfter {
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
