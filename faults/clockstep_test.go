package faults_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
)

// stepClock is a cache.Clock whose reading can step, forward or back,
// without time passing, as a wall clock does when it is set by hand or by
// NTP. Its timers run on elapsed time, as Go's timers run on the monotonic
// clock, so a step neither fires nor delays them. (cache/clocktest cannot
// step: its reading and its timers are one, and it never goes back.)
type stepClock struct {
	mu      sync.Mutex // guards the fields below
	start   time.Time
	elapsed time.Duration // time that has passed
	offset  time.Duration // the sum of the steps
	seq     uint64
	timers  []*stepTimer // pending, unordered
	// firing is set while fireNext runs a timer's function, and armed
	// counts the timers armed meanwhile.
	firing bool
	armed  int
}

var _ cache.Clock = (*stepClock)(nil)

func newStepClock(start time.Time) *stepClock { return &stepClock{start: start} }

// Now returns the clock's reading: start + elapsed + the steps.
func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start.Add(c.elapsed + c.offset)
}

// AfterFunc arms a timer that calls f once d more time has passed.
func (c *stepClock) AfterFunc(d time.Duration, f func()) cache.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if c.firing {
		c.armed++
	}
	t := &stepTimer{c: c, at: c.elapsed + max(d, 0), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Step moves the reading by d, forward or back; no time passes.
func (c *stepClock) Step(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Elapsed returns the time that has passed.
func (c *stepClock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elapsed
}

// next returns the earliest pending timer, or nil.
func (c *stepClock) nextLocked() *stepTimer {
	var next *stepTimer
	for _, t := range c.timers {
		if next == nil || t.at < next.at || (t.at == next.at && t.seq < next.seq) {
			next = t
		}
	}
	return next
}

// fireNext lets time pass until the earliest timer falls due, unless that
// is after limit (elapsed), in which case time passes until limit and
// fired is false. Otherwise it runs the timer's function and reports
// whether that function armed another timer (the cache planned anew
// without fetching) or not (it started a fetch). The cache arms a timer
// for a fetch it starts only once the fetch is over, which takes a token
// request: far longer than the function takes to return.
func (c *stepClock) fireNext(limit time.Duration) (fired, rearmed bool) {
	c.mu.Lock()
	next := c.nextLocked()
	if next == nil || next.at > limit {
		c.elapsed = max(c.elapsed, limit)
		c.mu.Unlock()
		return false, false
	}
	c.timers = slices.DeleteFunc(c.timers, func(t *stepTimer) bool { return t == next })
	c.elapsed = max(c.elapsed, next.at)
	c.firing, c.armed = true, 0
	c.mu.Unlock()
	next.f()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.firing = false
	return true, c.armed > 0
}

type stepTimer struct {
	c   *stepClock
	at  time.Duration // elapsed time at which it falls due
	seq uint64
	f   func()
}

// Stop prevents the call and reports whether it was still pending.
func (t *stepTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	n := len(t.c.timers)
	t.c.timers = slices.DeleteFunc(t.c.timers, func(u *stepTimer) bool { return u == t })
	return len(t.c.timers) < n
}

// TestClockSteps steps the clock of the daemon (and of the identity
// domain, so that the expiry of tokens issued afterwards agrees with it) by
// an hour, forward and back, without time passing; then lets three hours
// pass, timer by timer, asking for the token at every event. It proves
// that, measured by the clock the daemon reads:
//   - no expired token is served: after the forward step the held token
//     (expired by the new reading) is never served, the first get fetches
//     a new one; after the backward step the held token is served as what
//     it now is, valid for two more hours;
//   - there is no refresh storm: the token requests in the three hours
//     after the step are those of a token lifetime of an hour (the step
//     itself costs at most one), and a timer armed before a backward step
//     that falls due early by the new reading is re-planned, not turned
//     into a fetch.
//
// The daemon reads only the injected clock, so this is its behaviour when
// the Clock it is given steps. With the real clock it is the same: the
// cache keeps no monotonic clock reading in a token's expiry (Go's
// monotonic clock stops during a suspend), so every token's expiry is a
// wall time, as here; only the timers run on elapsed time.
func TestClockSteps(t *testing.T) {
	for _, tc := range []struct {
		name string
		step time.Duration
	}{
		{"forward an hour", time.Hour},
		{"back an hour", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testClockStep(t, tc.step)
		})
	}
}

func testClockStep(t *testing.T, step time.Duration) {
	const lifetime = time.Hour
	clock := newStepClock(fakeEpoch())
	e := newEnv(t, envOptions{now: clock.Now, omitExpiresIn: true})
	e.writeConfig(e.clientCredentialsProfile("ci"))
	d := e.start(clock)
	tok1 := d.get(t, "ci")
	e.logs.waitCount(t, refreshLine, 1)
	if want := clock.Now().Add(lifetime); !tok1.ExpiresAt.Equal(want) {
		t.Fatalf("the token expires at %v, want %v", tok1.ExpiresAt, want)
	}
	// Some time passes before the step, with no request.
	if fired, _ := clock.fireNext(10 * time.Minute); fired {
		t.Fatalf("a timer fell due within 10 minutes of a fetch of a token of an hour")
	}
	requests := e.em.Stats().TokenRequests

	clock.Step(step)
	now := clock.Now()
	n := e.logs.count(refreshLine)
	tok := d.get(t, "ci")
	switch {
	case step > 0:
		if tok.AccessToken == tok1.AccessToken {
			t.Fatalf("after a step forward past its expiry the daemon serves the old token")
		}
		// The get fetched the new token, once.
		e.logs.waitCount(t, refreshLine, n+1)
		if got := e.em.Stats().TokenRequests - requests; got != 1 {
			t.Errorf("the first get after the step made %d token requests, want 1", got)
		}
	case tok.AccessToken != tok1.AccessToken:
		t.Errorf("after a step back the daemon does not serve the token it holds")
	}
	checkValid(t, tok, now)
	after := e.em.Stats().TokenRequests

	// Three hours pass, timer by timer.
	const span = 3 * time.Hour
	limit := clock.Elapsed() + span
	var fetches, replans int
	for {
		n := e.logs.count(refreshLine)
		fired, rearmed := clock.fireNext(limit)
		if !fired {
			break
		}
		if rearmed {
			replans++
		} else {
			fetches++
			e.logs.waitCount(t, refreshLine, n+1)
		}
		checkValid(t, d.get(t, "ci"), clock.Now())
	}
	requests = e.em.Stats().TokenRequests - after
	// A scheduled refresh comes at least 2/3·L - L/10 after the last
	// fetch (cache/doc.go): 34 minutes for a token of an hour.
	bound := 1 + int(span/(2*lifetime/3-lifetime/10))
	t.Logf("in the %v after the step: %d scheduled fetches, %d timers re-planned without a fetch, %d token requests (bound %d)",
		span, fetches, replans, requests, bound)
	if requests != fetches || requests > bound {
		t.Errorf("in the %v after the step the daemon made %d token requests (%d scheduled); a token of an hour allows at most %d",
			span, requests, fetches, bound)
	}
	if step < 0 && replans == 0 {
		t.Errorf("the refresh timer armed before the step back fired without being re-planned by the new reading")
	}
}

// checkValid fails t unless tok is valid at now, with the expiry skew to
// spare.
func checkValid(t *testing.T, tok *apitype.Token, now time.Time) {
	t.Helper()
	if !tok.ExpiresAt.After(now.Add(expirySkew - time.Nanosecond)) {
		t.Errorf("at %v the daemon served a token expiring at %v", now, tok.ExpiresAt)
	}
}
