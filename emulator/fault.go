package emulator

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Fault is an answer the emulator gives a token request instead of
// serving it. The zero Fault lets the request through (useful in a queue).
type Fault struct {
	// Wait, when non-nil, holds the request until Wait is closed or the
	// request's context ends; in the latter case nothing is answered.
	Wait <-chan struct{}
	// Taken, when non-nil, receives a value when a request takes the
	// fault, before any Wait. The send does not block: give it a buffer.
	Taken chan<- struct{}
	// Status is the HTTP status to answer. Zero: no canned answer, the
	// request is served normally (after Wait, if set).
	Status int
	// Header holds response headers, such as Content-Type and Retry-After.
	Header http.Header
	// Body is the response body, sent verbatim.
	Body []byte
}

// ErrorFault answers status with an RFC 6749 §5.2 JSON error body.
func ErrorFault(status int, code, description string) Fault {
	body, _ := json.Marshal(errorBody{Error: code, Description: description})
	return Fault{
		Status: status,
		Header: http.Header{"Content-Type": {"application/json;charset=UTF-8"}},
		Body:   body,
	}
}

// TooManyRequestsFault answers 429 as the rate limit does, with the
// Retry-After header set to retryAfter (delay seconds or an HTTP date,
// sent as is) unless it is empty.
func TooManyRequestsFault(retryAfter string) Fault {
	f := ErrorFault(http.StatusTooManyRequests, "temporarily_unavailable", "too many requests")
	if retryAfter != "" {
		f.Header.Set("Retry-After", retryAfter)
	}
	return f
}

// RetryAfterDate formats t as an HTTP date for a Retry-After header.
func RetryAfterDate(t time.Time) string {
	return t.UTC().Format(http.TimeFormat)
}

// ServerErrorFault answers status (500, 502, 503...) with a JSON body:
// server_error for 500, temporarily_unavailable otherwise.
func ServerErrorFault(status int) Fault {
	code := "temporarily_unavailable"
	if status == http.StatusInternalServerError {
		code = "server_error"
	}
	return ErrorFault(status, code, http.StatusText(status))
}

// GarbageFault answers 200 with a JSON content type and a body that is
// not JSON (including control characters).
func GarbageFault() Fault {
	return Fault{
		Status: http.StatusOK,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   []byte("\x00\x1b[31m\xff\xfegarbage: not JSON at all\r\n"),
	}
}

// TruncatedJSONFault answers 200 with a token response cut short.
func TruncatedJSONFault() Fault {
	return Fault{
		Status: http.StatusOK,
		Header: http.Header{"Content-Type": {"application/json;charset=UTF-8"}},
		Body:   []byte(`{"access_token":"eyJhbGciOiJSUzI1NiIsImtpZCI6IlNJR05JTkdfS0VZIn0.eyJzdWIiOiJ0cnVuY2F0ZWQi`),
	}
}

// HTMLFault answers status with an HTML page, as a proxy or load balancer
// in front of the domain might (status 200 for a captive portal).
func HTMLFault(status int) Fault {
	return Fault{
		Status: status,
		Header: http.Header{"Content-Type": {"text/html; charset=utf-8"}},
		Body: []byte("<!DOCTYPE html>\n<html><head><title>Service Notice</title></head>\n" +
			"<body><h1>Please sign in to continue</h1><p>This network requires authentication.</p></body></html>\n"),
	}
}

// HangFault returns a fault that holds the request until the returned
// channel is closed (the request is then served normally) or the request's
// context ends (nothing is answered).
func HangFault() (Fault, chan<- struct{}) {
	release := make(chan struct{})
	return Fault{Wait: release}, release
}

// Inject queues faults for the next token requests, one each, in order.
func (e *Emulator) Inject(faults ...Fault) {
	e.mu.Lock()
	for _, f := range faults {
		e.faults = append(e.faults, f.clone())
	}
	e.mu.Unlock()
}

// clone copies the header and body, so that the caller may reuse f.
func (f Fault) clone() Fault {
	f.Header = f.Header.Clone()
	f.Body = bytes.Clone(f.Body)
	return f
}

// SetOutage makes every token request take f until ClearFaults.
func (e *Emulator) SetOutage(f Fault) {
	f = f.clone()
	e.mu.Lock()
	e.outage = &f
	e.mu.Unlock()
}

// ClearFaults drops the queued faults and ends the outage.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	e.faults = nil
	e.outage = nil
	e.mu.Unlock()
}

// nextFault returns the outage, else the next queued fault, else nil.
func (e *Emulator) nextFault() *Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.outage != nil {
		f := *e.outage
		return &f
	}
	if len(e.faults) == 0 {
		return nil
	}
	f := e.faults[0]
	e.faults[0] = Fault{}
	e.faults = e.faults[1:]
	return &f
}

// DomainType is an identity domain type; the types differ in rate limits.
type DomainType int

// Identity domain types.
const (
	DomainFree DomainType = iota
	DomainOracleApps
	DomainPremium
)

// RateLimit limits token requests per second and per minute. A zero
// limit is no limit.
type RateLimit struct {
	PerSecond int
	PerMinute int
	// RetryAfter reports whether 429 answers carry a Retry-After header
	// (the identity domain documents none).
	RetryAfter bool
}

// DomainRateLimit returns the documented token-endpoint rate limit of a
// domain type.
func DomainRateLimit(t DomainType) RateLimit {
	switch t {
	case DomainOracleApps:
		return RateLimit{PerSecond: 40, PerMinute: 1000}
	case DomainPremium:
		return RateLimit{PerSecond: 65, PerMinute: 3400}
	default:
		return RateLimit{PerSecond: 10, PerMinute: 150}
	}
}

// SetRateLimit replaces the rate limit and forgets past requests.
func (e *Emulator) SetRateLimit(l RateLimit) {
	e.mu.Lock()
	e.limiter = Limiter{Limit: l}
	e.mu.Unlock()
}

// admit applies the rate limit to a request arriving at now. It reports
// whether the request may proceed and, if not, when a retry could.
func (e *Emulator) admit(now time.Time) (ok bool, wait time.Duration, limit RateLimit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ok, wait = e.limiter.Admit(now)
	return ok, wait, e.limiter.Limit
}

// Limiter applies a RateLimit the way an identity domain does: a sliding
// window per second and per minute over the requests it let through. The
// emulator uses one; simulations may use their own. It is not safe for
// concurrent use.
type Limiter struct {
	Limit    RateLimit
	admitted []time.Time // arrival times of admitted requests, oldest first
}

// Admit reports whether a request arriving at now may proceed and, if
// not, how long until one could; an admitted request counts against the
// windows.
func (l *Limiter) Admit(now time.Time) (ok bool, wait time.Duration) {
	lim := l.Limit
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

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}
