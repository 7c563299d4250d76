package faults_test

import (
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/emulator"
)

// The backoff policy as the cache documents it (cache/doc.go, "Failures";
// cache/schedule.go): after the n-th consecutive retryable failure, wait
// uniform in [0, min(MaxBackoff, B·2^(n-1))), B the RateLimitBackoff after
// a 429 and the BaseBackoff otherwise, at least minRetryDelay, at most half
// the held token's remaining servable life (at least 1 s), and at least
// the server's Retry-After.
const (
	baseBackoff      = cache.DefaultBaseBackoff
	rateLimitBackoff = cache.DefaultRateLimitBackoff
	maxBackoff       = cache.DefaultMaxBackoff
	minRetryDelay    = 250 * time.Millisecond // cache/schedule.go minRetryDelay
	expirySkew       = cache.DefaultExpirySkew
	// boundFailure is the probability below which maxAttempts' bound may
	// be exceeded by a correct backoff.
	boundFailure = 1e-9
)

// backoffCeiling returns the ceiling of the wait after the n-th
// consecutive failure.
func backoffCeiling(n int) time.Duration {
	if n > 32 {
		return maxBackoff
	}
	return min(maxBackoff, baseBackoff<<(n-1))
}

// rateLimitCeiling returns the ceiling of the wait after the n-th
// consecutive 429.
func rateLimitCeiling(n int) time.Duration {
	if n > 32 {
		return maxBackoff
	}
	return min(maxBackoff, rateLimitBackoff<<(n-1))
}

// cappedAttempts bounds the attempts that the cap of half the held
// token's remaining servable life can add when that life is served at
// the first failure: each capped wait halves what is left, down to 1 s,
// and then takes at least 1 s of the last 2 s.
func cappedAttempts(served time.Duration) int {
	return bits.Len64(uint64(served/time.Second)) + 2
}

// maxAttempts returns how many attempts the backoff allows in a window w
// that begins with a failed attempt, when every attempt fails: a bound that
// a correct backoff exceeds with probability below boundFailure. With a
// Retry-After of at least retryAfter it is exact: 1 + w/retryAfter.
//
// Full jitter allows any number of attempts down to minRetryDelay apart,
// so the bound is probabilistic: N attempts in w need the first N-1 waits
// to sum to at most w. Dropping the waits before the ceiling reaches
// MaxBackoff (the first m-1), each later wait is at least U·MaxBackoff with
// U uniform in [0, 1), so P(N >= m+k) <= P(U_1+...+U_k <= w/MaxBackoff),
// the Irwin–Hall distribution's CDF. For w = 10 min that is k = 17 and a
// bound of 26 attempts.
func maxAttempts(w, retryAfter time.Duration) int {
	if retryAfter > 0 {
		return 1 + int(w/retryAfter)
	}
	m := 1
	for backoffCeiling(m) < maxBackoff {
		m++
	}
	x := w.Seconds() / maxBackoff.Seconds()
	k := 1
	for irwinHallCDF(k, x) >= boundFailure {
		k++
	}
	return min(m+k-1, 1+int(w/minRetryDelay))
}

// irwinHallCDF returns P(U_1+...+U_k <= x) for independent U_i uniform in
// [0, 1).
func irwinHallCDF(k int, x float64) float64 {
	if x >= float64(k) {
		return 1
	}
	sum := 0.0
	for j := 0; j <= int(math.Floor(x)); j++ {
		term := binomial(k, j) * math.Pow(x-float64(j), float64(k))
		if j%2 == 1 {
			term = -term
		}
		sum += term
	}
	fact := 1.0
	for i := 2; i <= k; i++ {
		fact *= float64(i)
	}
	return sum / fact
}

func binomial(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

func TestMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		w, retryAfter time.Duration
		want          int
	}{
		{10 * time.Minute, 0, 26},
		{150 * time.Second, 0, 19},
		{10 * time.Minute, 2 * time.Minute, 6},
	} {
		if got := maxAttempts(tc.w, tc.retryAfter); got != tc.want {
			t.Errorf("maxAttempts(%v, %v) = %d, want %d", tc.w, tc.retryAfter, got, tc.want)
		}
	}
}

// endpointFault is one way the token endpoint fails.
type endpointFault struct {
	name string
	tls  bool
	// window is the simulated time over which attempts are counted, from
	// the first failed attempt. It covers the token's expiry.
	window time.Duration
	// begin puts the endpoint at fault and returns the function that ends
	// the fault.
	begin func(t *testing.T, e *env) (end func())
	// wantErr is in the error tokd reports for the fault.
	wantErr string
	// rateLimited says the fault answers 429, which the cache backs off
	// from with its RateLimitBackoff.
	rateLimited bool
	// retryAfter returns a lower bound of the Retry-After of every answer
	// so far and an upper bound; nil when the answers carry none.
	retryAfter func() (lo, hi time.Duration)
	// requests returns the token requests (or TLS handshakes) the endpoint
	// has seen; nil when it cannot see them (it is down).
	requests func(e *env) int
}

// outage returns a begin function that makes every token request take f.
func outage(f emulator.Fault) func(*testing.T, *env) func() {
	return func(_ *testing.T, e *env) func() {
		e.em.SetOutage(f)
		return e.em.ClearFaults
	}
}

func emulatorRequests(e *env) int { return e.em.Stats().TokenRequests }

// TestTokenEndpointFaults runs one daemon per way the token endpoint can
// fail, on an injected clock. For each it proves that, while the endpoint
// fails:
//   - tokd keeps serving the valid token it holds, to concurrent callers,
//     until ExpirySkew before its expiry, and from then on no token: get
//     fails at once with 503 and the last error, which status shows too;
//   - tokd's attempts (counted by the endpoint, not by tokd) are exactly
//     those its scheduler makes, each wait within the backoff policy's
//     bounds (at least 250 ms, at most the ceiling for that failure, at
//     least the server's Retry-After), and no more in the window than the
//     policy allows (maxAttempts), however often callers ask;
//   - a forced refresh does not break a Retry-After;
//
// and that once the endpoint works again, tokd's next scheduled attempt
// fetches a fresh token, which get serves, and status shows no error.
func TestTokenEndpointFaults(t *testing.T) {
	const window = 10 * time.Minute
	var retryDate time.Time // of the Retry-After date case, set by its begin
	cases := []endpointFault{
		{
			name: "down", window: window,
			begin: func(t *testing.T, e *env) func() {
				e.ep.down()
				return func() { e.ep.up(t) }
			},
			wantErr: "connection refused",
		},
		{
			// Each attempt costs the profile's timeout, 1 s, in real time;
			// a shorter window keeps the test short.
			name: "slow beyond the timeout", window: 150 * time.Second,
			begin: func(_ *testing.T, e *env) func() {
				f, release := emulator.HangFault()
				e.em.SetOutage(f)
				return func() { e.em.ClearFaults(); close(release) }
			},
			wantErr:  "timeout",
			requests: emulatorRequests,
		},
		{
			name: "429 with Retry-After seconds", window: window,
			begin:   outage(emulator.TooManyRequestsFault("120")),
			wantErr: "HTTP 429", rateLimited: true,
			retryAfter: func() (time.Duration, time.Duration) { return 120 * time.Second, 120 * time.Second },
			requests:   emulatorRequests,
		},
		{
			// tokd measures an HTTP date against the real clock, so the
			// date is two real minutes ahead: the delay it implies shrinks
			// as real time passes, and is bounded below by what is left
			// of it at the end.
			name: "429 with Retry-After date", window: window,
			begin: func(_ *testing.T, e *env) func() {
				retryDate = time.Now().Add(2 * time.Minute).Truncate(time.Second)
				e.em.SetOutage(emulator.TooManyRequestsFault(emulator.RetryAfterDate(retryDate)))
				return e.em.ClearFaults
			},
			wantErr: "HTTP 429", rateLimited: true,
			retryAfter: func() (time.Duration, time.Duration) {
				return time.Until(retryDate), 2 * time.Minute
			},
			requests: emulatorRequests,
		},
		{
			name: "429 without Retry-After", window: window,
			begin: outage(emulator.TooManyRequestsFault("")), wantErr: "HTTP 429", rateLimited: true, requests: emulatorRequests,
		},
		{
			name: "500", window: window,
			begin: outage(emulator.ServerErrorFault(http.StatusInternalServerError)), wantErr: "HTTP 500", requests: emulatorRequests,
		},
		{
			name: "503", window: window,
			begin: outage(emulator.ServerErrorFault(http.StatusServiceUnavailable)), wantErr: "HTTP 503", requests: emulatorRequests,
		},
		{
			name: "502 HTML page", window: window,
			begin: outage(emulator.HTMLFault(http.StatusBadGateway)), wantErr: "HTTP 502", requests: emulatorRequests,
		},
		{
			name: "garbage 200 body", window: window,
			begin: outage(emulator.GarbageFault()), wantErr: "unreadable token response", requests: emulatorRequests,
		},
		{
			name: "truncated 200 body", window: window,
			begin: outage(emulator.TruncatedJSONFault()), wantErr: "unreadable token response", requests: emulatorRequests,
		},
		{
			name: "200 HTML captive portal", window: window,
			begin: outage(emulator.HTMLFault(http.StatusOK)), wantErr: "unreadable token response", requests: emulatorRequests,
		},
		{
			// The endpoint restarts with a certificate from a CA that
			// ca_file does not hold, then again with a trusted one.
			name: "untrusted TLS certificate", tls: true, window: window,
			begin: func(t *testing.T, e *env) func() {
				e.ep.down()
				e.ep.trusted.Store(false)
				e.ep.up(t)
				return func() { e.ep.trusted.Store(true) }
			},
			wantErr:  "certificate",
			requests: func(e *env) int { return int(e.ep.handshakes.Load()) },
		},
	}
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			testEndpointFault(t, fc)
		})
	}
}

// lifetime is the access-token lifetime of the endpoint fault tests: the
// scheduled refresh falls 170 to 230 s after the fetch, the token stops
// being served at 290 s and expires at 300 s.
const lifetime = 5 * time.Minute

func testEndpointFault(t *testing.T, fc endpointFault) {
	clock := clocktest.New(fakeEpoch())
	e := newEnv(t, envOptions{now: clock.Now, lifetime: lifetime, omitExpiresIn: true, tls: fc.tls})
	e.writeConfig(e.clientCredentialsProfile("ci", `timeout = "1s"`))
	d := e.start(clock)
	dr := &driver{t: t, clock: clock, logs: e.logs}

	tok1 := d.get(t, "ci")
	// The initial fetch's log line follows the scheduling of the next
	// refresh: from here on the clock's one timer is the cache's.
	e.logs.waitCount(t, refreshLine, 1)
	start := clock.Now()
	if !tok1.ExpiresAt.Equal(start.Add(lifetime)) {
		t.Fatalf("the token expires at %v, want %v: tokd does not take its expiry from the injected clock",
			tok1.ExpiresAt, start.Add(lifetime))
	}
	serveUntil := tok1.ExpiresAt.Add(-expirySkew)

	end := fc.begin(t, e)
	before := 0
	if fc.requests != nil {
		before = fc.requests(e)
	}

	// The scheduled refresh is the first attempt to fail.
	first, line := dr.attempt()
	if !strings.Contains(line, "outcome=retryable_error") {
		t.Fatalf("the first attempt during the fault logged %q, want a retryable error", line)
	}
	if first.After(serveUntil) || first.Before(start.Add(lifetime/2)) {
		t.Errorf("the scheduled refresh came %v after the fetch, want between %v and %v",
			first.Sub(start), lifetime/2, serveUntil.Sub(start))
	}
	if fc.retryAfter != nil {
		// tokctl refresh overrides the backoff, never a Retry-After.
		n := fc.requests(e)
		_, err := d.client.Refresh("ci")
		if err == nil || !strings.Contains(err.Error(), "asked to wait") {
			t.Errorf("a forced refresh during a Retry-After: %v, want a refusal that names the wait", err)
		}
		if got := fc.requests(e); got != n {
			t.Errorf("a forced refresh during a Retry-After sent %d token requests, want 0", got-n)
		}
	}
	checkGets(t, d, clock, tok1, serveUntil, fc.wantErr)

	windowEnd := first.Add(fc.window)
	checkpoints := []time.Time{serveUntil.Add(-time.Second), serveUntil, tok1.ExpiresAt, tok1.ExpiresAt.Add(time.Second)}
	for {
		deadline, ok := clock.NextDeadline()
		if !ok {
			t.Fatalf("at %v into the fault no attempt is planned", clock.Now().Sub(first))
		}
		for len(checkpoints) > 0 && !checkpoints[0].After(clock.Now()) {
			checkpoints = checkpoints[1:]
		}
		switch {
		case len(checkpoints) > 0 && checkpoints[0].Before(deadline) && !checkpoints[0].After(windowEnd):
			clock.AdvanceTo(checkpoints[0])
		case !deadline.After(windowEnd):
			if _, line := dr.attempt(); !strings.Contains(line, "outcome=retryable_error") {
				t.Fatalf("attempt %d during the fault logged %q, want a retryable error", len(dr.attempts), line)
			}
		default:
			clock.AdvanceTo(windowEnd)
		}
		if clock.Now().Equal(windowEnd) {
			break
		}
		checkGets(t, d, clock, tok1, serveUntil, fc.wantErr)
	}
	if clock.Now().Before(tok1.ExpiresAt) {
		t.Fatalf("the window ended before the token expired")
	}
	checkGets(t, d, clock, tok1, serveUntil, fc.wantErr)

	// The attempts against the backoff policy.
	n := len(dr.attempts)
	var raLo, raHi time.Duration
	if fc.retryAfter != nil {
		raLo, raHi = fc.retryAfter()
	}
	// maxAttempts holds for the longer waits after a 429 too.
	bound := maxAttempts(fc.window, raLo) + cappedAttempts(serveUntil.Sub(first))
	t.Logf("%d attempts in %v of fault (bound %d), %s", n, fc.window, bound, dr.gaps())
	if n > bound {
		t.Errorf("%d attempts in %v of fault; the backoff allows at most %d", n, fc.window, bound)
	}
	for i := 1; i < n; i++ {
		gap := dr.attempts[i].Sub(dr.attempts[i-1])
		ceiling := backoffCeiling(i)
		if fc.rateLimited {
			ceiling = rateLimitCeiling(i)
		}
		lo, hi := max(minRetryDelay, raLo), max(ceiling, raHi)
		if gap < lo || gap > hi {
			t.Errorf("attempt %d came %v after failure %d, want between %v and %v", i+1, gap, i, lo, hi)
		}
	}
	if fc.requests != nil {
		if got := fc.requests(e) - before; got != n {
			t.Errorf("the endpoint saw %d requests during the fault, tokd's scheduler made %d attempts", got, n)
		}
	}
	st := d.profileStatus(t, "ci")
	if st.State != "failing" || !strings.Contains(st.LastError, fc.wantErr) {
		t.Errorf("status after the token expired during the fault: state %q, last error %q; want failing with %q",
			st.State, st.LastError, fc.wantErr)
	}

	// Recovery: the next scheduled attempt succeeds by itself.
	end()
	at, line := dr.attempt()
	if !strings.Contains(line, "outcome=ok") {
		t.Fatalf("the first attempt after the endpoint recovered logged %q, want ok", line)
	}
	// The emulator issues at whole seconds.
	tok2 := d.get(t, "ci")
	if want := at.Truncate(time.Second).Add(lifetime); tok2.AccessToken == tok1.AccessToken || !tok2.ExpiresAt.Equal(want) {
		t.Errorf("after recovery get serves a token expiring at %v (the old one: %v), want a fresh one expiring at %v",
			tok2.ExpiresAt, tok2.AccessToken == tok1.AccessToken, want)
	}
	if st := d.profileStatus(t, "ci"); st.State != "valid" || st.LastError != "" || st.LastErrorAt != nil {
		t.Errorf("status after recovery: state %q, last error %q; want valid with no error", st.State, st.LastError)
	}
}

// checkGets asks for the token from several callers at once, at the
// clock's present time: before serveUntil each must get tok, afterwards
// each must fail with 503 naming wantErr.
func checkGets(t *testing.T, d *running, clock *clocktest.Clock, tok *apitype.Token, serveUntil time.Time, wantErr string) {
	t.Helper()
	now := clock.Now()
	const callers = 3
	var wg sync.WaitGroup
	toks := make([]*apitype.Token, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { toks[i], errs[i] = d.client.Token("ci") })
	}
	wg.Wait()
	for i := range callers {
		got, err := toks[i], errs[i]
		switch {
		case now.Before(serveUntil) && err != nil:
			t.Errorf("get at %v before expiry, during the fault: %v; want the valid token held", tok.ExpiresAt.Sub(now), err)
		case now.Before(serveUntil) && got.AccessToken != tok.AccessToken:
			t.Errorf("get at %v before expiry, during the fault, served another token than the one held", tok.ExpiresAt.Sub(now))
		case !now.Before(serveUntil) && err == nil:
			t.Fatalf("get %v after the serving deadline, during the fault, served a token expiring at %v (the old one: %v)",
				now.Sub(serveUntil), got.ExpiresAt, got.AccessToken == tok.AccessToken)
		case !now.Before(serveUntil) && (!noTokenStatus(err) || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("get after expiry during the fault: %v (status %d), want 503 naming %q", err, apiStatus(err), wantErr)
		}
		if err == nil && !got.ExpiresAt.After(now) {
			t.Errorf("get served a token that expired %v ago", now.Sub(got.ExpiresAt))
		}
	}
}

// noTokenStatus reports whether err is the daemon's answer when it holds
// no valid token and its last attempt failed: 503, or 504 when that
// attempt timed out (daemon/server.go writeCacheError maps every error
// wrapping context.DeadlineExceeded to 504, the fetch's own timeout as
// well as the caller's).
func noTokenStatus(err error) bool {
	switch apiStatus(err) {
	case http.StatusServiceUnavailable:
		return true
	case http.StatusGatewayTimeout:
		return strings.Contains(err.Error(), "last refresh failed") && strings.Contains(err.Error(), "timeout")
	}
	return false
}

// driver moves a daemon's clocktest clock from one timer of the cache to
// the next, waiting after each for the fetch it starts.
type driver struct {
	t        *testing.T
	clock    *clocktest.Clock
	logs     *logSink
	attempts []time.Time // when each fetch started, on the clock
}

// attempt advances the clock to the cache's timer, which starts a fetch,
// waits until the fetch has ended (its log line follows the scheduling of
// the next attempt) and returns when it started and its log line.
func (dr *driver) attempt() (time.Time, string) {
	dr.t.Helper()
	at, ok := dr.clock.NextDeadline()
	if !ok {
		dr.t.Fatalf("no attempt is planned")
	}
	n := dr.logs.count(refreshLine)
	dr.clock.AdvanceTo(at)
	line := dr.logs.waitCount(dr.t, refreshLine, n+1)
	dr.attempts = append(dr.attempts, at)
	return at, line
}

// gaps describes the waits between attempts.
func (dr *driver) gaps() string {
	var b strings.Builder
	b.WriteString("waits:")
	for i := 1; i < len(dr.attempts); i++ {
		fmt.Fprintf(&b, " %v", dr.attempts[i].Sub(dr.attempts[i-1]).Round(10*time.Millisecond))
	}
	return b.String()
}
