package emulator

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Client authentication methods, as OpenID Connect names them.
const (
	authBasic         = "client_secret_basic"
	authPrivateKeyJWT = "private_key_jwt"
	authSecretPost    = "client_secret_post"
	authMultiple      = "multiple"
	authNone          = "none"
)

// Stats is a snapshot of what the token endpoint has seen.
type Stats struct {
	// TokenRequests counts POSTs to the token endpoint, answered or not.
	TokenRequests int
	// ByGrant counts them by grant_type: the three supported grants,
	// "other" for any other value and "" when it was missing.
	ByGrant map[string]int
	// Issued counts access tokens issued (one per entry of a tokenResponses answer).
	Issued int
	// Faulted counts requests that took an injected fault or an outage.
	Faulted int
	// RateLimited counts requests refused by the rate limit.
	RateLimited int
	// Recent holds the last Options.History requests, oldest first, each
	// recorded when its answer is written.
	Recent []RequestInfo
}

// RequestInfo is what the emulator keeps of one token request: never a
// secret, an assertion or a token.
type RequestInfo struct {
	Time       time.Time // arrival, on the injected clock
	GrantType  string
	ClientID   string // from Basic, client_id or the client assertion's iss
	ClientAuth string // client_secret_basic, private_key_jwt, client_secret_post, multiple or none
	Scope      string
	// Assertion and ClientAssertion describe the JWTs sent, as sent
	// (unverified); nil when absent.
	Assertion       *AssertionInfo
	ClientAssertion *AssertionInfo
	Status          int    // HTTP status answered; 0 when the client left first
	Error           string // the RFC 6749 error code answered, if any
	Fault           bool   // the answer came from an injected fault or outage
	RateLimited     bool
}

// AssertionInfo is the header and claims of an assertion as sent.
type AssertionInfo struct {
	Malformed bool // the JWT could not be decoded; the fields below are empty
	Alg       string
	KeyID     string // header kid
	X5T       string // header x5t
	Issuer    string
	Subject   string
	Audience  []string
	IssuedAt  time.Time // zero when absent
	NotBefore time.Time // zero when absent
	ExpiresAt time.Time // zero when absent
	JTI       string
}

func describeAssertion(raw string) *AssertionInfo {
	if raw == "" {
		return nil
	}
	h, c, err := decodeJWT(raw)
	if err != nil {
		return &AssertionInfo{Malformed: true}
	}
	info := &AssertionInfo{
		Alg: h.Alg, KeyID: h.Kid, X5T: h.X5T,
		Issuer: c.Issuer, Subject: c.Subject, Audience: slices.Clone([]string(c.Audience)), JTI: c.ID,
	}
	if c.IssuedAt != nil {
		info.IssuedAt = c.IssuedAt.Time
	}
	if c.NotBefore != nil {
		info.NotBefore = c.NotBefore.Time
	}
	if c.ExpiresAt != nil {
		info.ExpiresAt = c.ExpiresAt.Time
	}
	return info
}

// describeRequest records the non-secret parts of a token request.
func describeRequest(r *http.Request, form url.Values, now time.Time) RequestInfo {
	info := RequestInfo{
		Time:            now,
		GrantType:       form.Get("grant_type"),
		Scope:           form.Get("scope"),
		Assertion:       describeAssertion(form.Get("assertion")),
		ClientAssertion: describeAssertion(form.Get("client_assertion")),
		ClientID:        form.Get("client_id"),
	}
	var methods []string
	if r.Header.Get("Authorization") != "" {
		methods = append(methods, authBasic)
		if user, _, ok := r.BasicAuth(); ok {
			if id, err := url.QueryUnescape(user); err == nil {
				info.ClientID = id
			}
		}
	}
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		methods = append(methods, authPrivateKeyJWT)
		if info.ClientID == "" && info.ClientAssertion != nil {
			info.ClientID = info.ClientAssertion.Issuer
		}
	}
	if form.Has("client_secret") {
		methods = append(methods, authSecretPost)
	}
	switch len(methods) {
	case 0:
		info.ClientAuth = authNone
	case 1:
		info.ClientAuth = methods[0]
	default:
		info.ClientAuth = authMultiple
	}
	return info
}

// grantKey is the ByGrant key of a grant_type value.
func grantKey(g string) string {
	switch g {
	case "", GrantJWTBearer, GrantClientCredentials, GrantRefreshToken:
		return g
	}
	return "other"
}

// countRequest counts a token request on arrival.
func (e *Emulator) countRequest(grant string) {
	e.mu.Lock()
	e.stats.TokenRequests++
	e.stats.ByGrant[grantKey(grant)]++
	e.mu.Unlock()
}

// record keeps info once the request is answered.
func (e *Emulator) record(info RequestInfo, issued int) {
	e.mu.Lock()
	e.stats.Issued += issued
	if info.Fault {
		e.stats.Faulted++
	}
	if info.RateLimited {
		e.stats.RateLimited++
	}
	if e.history > 0 {
		if len(e.stats.Recent) >= e.history {
			e.stats.Recent = slices.Delete(e.stats.Recent, 0, len(e.stats.Recent)-e.history+1)
		}
		e.stats.Recent = append(e.stats.Recent, info)
	}
	e.mu.Unlock()
	if e.logger != nil {
		e.logger.Info("token request",
			"grant_type", strings.ToValidUTF8(truncate(info.GrantType, 80), "?"),
			"client_id", strings.ToValidUTF8(truncate(info.ClientID, 80), "?"),
			"client_auth", info.ClientAuth,
			"status", info.Status,
			"error", info.Error,
			"fault", info.Fault)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Stats returns a snapshot of the token endpoint's counters and recent requests.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.ByGrant = maps.Clone(e.stats.ByGrant)
	s.Recent = slices.Clone(e.stats.Recent)
	return s
}

// ResetStats zeroes the counters and forgets recent requests.
func (e *Emulator) ResetStats() {
	e.mu.Lock()
	e.stats = Stats{ByGrant: make(map[string]int)}
	e.mu.Unlock()
}
