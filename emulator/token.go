package emulator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxFormBytes bounds a token request's body.
const maxFormBytes = 64 << 10

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func errf(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *oauthError {
	return errf(http.StatusBadRequest, "invalid_request", format, args...)
}

func invalidClient(format string, args ...any) *oauthError {
	return errf(http.StatusUnauthorized, "invalid_client", format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return errf(http.StatusBadRequest, "invalid_grant", format, args...)
}

func invalidScope(err error) *oauthError {
	return errf(http.StatusBadRequest, "invalid_scope", "%v", err)
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// tokenResponse is the RFC 6749 §5.1 answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// multiResponse is the answer for scopes of several resource servers.
type multiResponse struct {
	TokenResponses []tokenResponse `json:"tokenResponses"`
}

// refreshGrant is what a refresh token stands for.
type refreshGrant struct {
	clientID string
	subject  string
	subType  string
	server   string   // scopeGroup.key()
	scopes   []string // the original grant's, without modifiers
	expiry   time.Duration
	expires  time.Time
}

func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
	arrival := e.now()
	form, formErr := readForm(w, r)
	info := describeRequest(r, form, arrival)
	e.countRequest(info.GrantType)

	if f := e.nextFault(); f != nil {
		info.Fault = true
		if f.Taken != nil {
			select {
			case f.Taken <- struct{}{}:
			default:
			}
		}
		if f.Wait != nil {
			select {
			case <-f.Wait:
			case <-r.Context().Done():
				e.record(info, 0)
				return
			}
		}
		if f.Status != 0 {
			for k, vs := range f.Header {
				w.Header()[k] = append([]string(nil), vs...)
			}
			w.WriteHeader(f.Status)
			_, _ = w.Write(f.Body)
			info.Status = f.Status
			e.record(info, 0)
			return
		}
		info.Fault = false
	}

	now := e.now()
	if ok, wait, limit := e.admit(now); !ok {
		var h http.Header
		if limit.RetryAfter {
			h = http.Header{"Retry-After": {retryAfterSeconds(wait)}}
		}
		info.RateLimited = true
		e.writeError(w, h, &info, errf(http.StatusTooManyRequests, "temporarily_unavailable", "rate limit exceeded"))
		return
	}
	if formErr != nil {
		e.writeError(w, nil, &info, formErr)
		return
	}
	body, issued, oerr := e.token(r, form, now)
	if oerr != nil {
		e.writeError(w, nil, &info, oerr)
		return
	}
	info.Status = http.StatusOK
	writeJSON(w, http.StatusOK, nil, body)
	e.record(info, issued)
}

func (e *Emulator) writeError(w http.ResponseWriter, h http.Header, info *RequestInfo, oerr *oauthError) {
	if oerr.status == http.StatusUnauthorized {
		if h == nil {
			h = make(http.Header)
		}
		h.Set("WWW-Authenticate", `Basic realm="identity domain"`)
	}
	writeJSON(w, oerr.status, h, errorBody{Error: oerr.code, Description: oerr.desc})
	info.Status, info.Error = oerr.status, oerr.code
	e.record(*info, 0)
}

// readForm reads a form-encoded body, refusing other content types and
// repeated parameters (RFC 6749 §3.2). The form is never nil.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return url.Values{}, invalidRequest("the request body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return url.Values{}, invalidRequest("the request body is not a readable form of at most %d bytes", maxFormBytes)
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			return r.PostForm, invalidRequest("parameter %q is repeated", k)
		}
	}
	return r.PostForm, nil
}

// token serves a parsed token request: the JSON answer and the number of
// access tokens in it, or an error.
func (e *Emulator) token(r *http.Request, form url.Values, now time.Time) (any, int, *oauthError) {
	grant := form.Get("grant_type")
	switch grant {
	case "":
		return nil, 0, invalidRequest("grant_type is required")
	case GrantJWTBearer, GrantClientCredentials, GrantRefreshToken:
	default:
		return nil, 0, errf(http.StatusBadRequest, "unsupported_grant_type", "grant type %q is not supported", truncate(grant, 100))
	}
	domain := e.domainFor(r)
	client, oerr := e.authenticateClient(r, form, domain, now)
	if oerr != nil {
		return nil, 0, oerr
	}
	if !client.grants[grant] {
		return nil, 0, errf(http.StatusBadRequest, "unauthorized_client",
			"client %q is not allowed the %s grant", client.ClientID, grant)
	}
	switch grant {
	case GrantJWTBearer:
		raw := form.Get("assertion")
		if raw == "" {
			return nil, 0, invalidRequest("assertion is required")
		}
		claims, err := e.verifyAssertion(raw, client, userAssertion, domain, now)
		if err != nil {
			return nil, 0, invalidGrant("%v", err)
		}
		return e.grantScope(form, client, claims.Subject, "user", domain, now)
	case GrantClientCredentials:
		return e.grantScope(form, client, client.ClientID, "client", domain, now)
	default:
		return e.refreshGrant(form, client, domain, now)
	}
}

// authenticateClient authenticates the client with HTTP Basic or a client
// assertion and returns its app.
func (e *Emulator) authenticateClient(r *http.Request, form url.Values, domain string, now time.Time) (*app, *oauthError) {
	authz := r.Header.Get("Authorization")
	hasAssertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	switch {
	case form.Has("client_secret"):
		return nil, invalidClient("client_secret in the request body is not accepted: use HTTP Basic")
	case authz != "" && hasAssertion:
		return nil, invalidRequest("the request uses more than one client authentication method")
	case authz != "":
		return e.authenticateBasic(r, form)
	case hasAssertion:
		return e.authenticateAssertion(form, domain, now)
	}
	return nil, invalidClient("client authentication is required: HTTP Basic or a client assertion")
}

func (e *Emulator) authenticateBasic(r *http.Request, form url.Values) (*app, *oauthError) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil, invalidClient("the Authorization header is not HTTP Basic credentials")
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil {
		return nil, invalidClient("the Basic credentials are not form-URL-encoded (RFC 6749 §2.3.1)")
	}
	a := e.lookupApp(id)
	if a == nil || a.ClientSecret == "" ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(a.ClientSecret)) != 1 {
		return nil, invalidClient("client authentication failed")
	}
	if cid := form.Get("client_id"); cid != "" && cid != id {
		return nil, invalidClient("client_id does not match the authenticated client")
	}
	return a, nil
}

func (e *Emulator) authenticateAssertion(form url.Values, domain string, now time.Time) (*app, *oauthError) {
	if t := form.Get("client_assertion_type"); t != ClientAssertionType {
		return nil, invalidClient("client_assertion_type must be %s", ClientAssertionType)
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return nil, invalidClient("client_assertion is required with client_assertion_type")
	}
	id := form.Get("client_id")
	if id == "" {
		_, c, err := decodeJWT(raw)
		if err != nil {
			return nil, invalidClient("client assertion is malformed: %v", err)
		}
		id = c.Issuer
	}
	a := e.lookupApp(id)
	if a == nil {
		return nil, invalidClient("client authentication failed")
	}
	if _, err := e.verifyAssertion(raw, a, clientAssertion, domain, now); err != nil {
		return nil, invalidClient("%v", err)
	}
	return a, nil
}

// grantScope answers a jwt-bearer or client_credentials grant for subject.
func (e *Emulator) grantScope(form url.Values, a *app, subject, subType, domain string, now time.Time) (any, int, *oauthError) {
	req, err := e.parseScope(form.Get("scope"), a)
	if err != nil {
		return nil, 0, invalidScope(err)
	}
	resps := make([]tokenResponse, 0, len(req.groups))
	for _, g := range req.groups {
		resp, err := e.issue(a, subject, subType, g, req.expiry, req.offline, domain, now)
		if err != nil {
			return nil, 0, errf(http.StatusInternalServerError, "server_error", "%v", err)
		}
		resps = append(resps, resp)
	}
	if len(resps) == 1 {
		return resps[0], 1, nil
	}
	return multiResponse{TokenResponses: resps}, len(resps), nil
}

// refreshGrant answers the refresh_token grant, rotating the refresh token.
func (e *Emulator) refreshGrant(form url.Values, a *app, domain string, now time.Time) (any, int, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, 0, invalidRequest("refresh_token is required")
	}
	key := refreshKey(rt)
	e.mu.Lock()
	g := e.refresh[key]
	if g != nil && !now.Before(g.expires) {
		delete(e.refresh, key)
		g = nil
	}
	e.mu.Unlock()
	if g == nil {
		return nil, 0, invalidGrant("the refresh token is invalid, expired or already used")
	}
	if g.clientID != a.ClientID {
		return nil, 0, invalidGrant("the refresh token was issued to another client")
	}
	group := &scopeGroup{scopes: g.scopes}
	if g.server != "" {
		e.mu.Lock()
		group.server = e.servers[g.server]
		e.mu.Unlock()
		if group.server == nil {
			return nil, 0, invalidGrant("the refresh token's resource server no longer exists")
		}
	}
	expiry := g.expiry
	if scope := form.Get("scope"); scope != "" {
		req, err := e.parseScope(scope, a)
		if err != nil {
			return nil, 0, invalidScope(err)
		}
		if len(req.groups) != 1 || req.groups[0].key() != g.server || !subset(req.groups[0].scopes, g.scopes) {
			return nil, 0, invalidScope(errors.New("the scope exceeds the scope of the original grant"))
		}
		group.scopes = req.groups[0].scopes
		if req.expiry != 0 {
			expiry = req.expiry
		}
	}
	// Consume the token; a concurrent refresh may have beaten us to it.
	e.mu.Lock()
	if e.refresh[key] != g {
		e.mu.Unlock()
		return nil, 0, invalidGrant("the refresh token is invalid, expired or already used")
	}
	delete(e.refresh, key)
	e.mu.Unlock()
	next := &refreshGrant{clientID: g.clientID, subject: g.subject, subType: g.subType,
		server: g.server, scopes: g.scopes, expiry: g.expiry, expires: g.expires}
	resp, err := e.issueToken(a, g.subject, g.subType, group, expiry, domain, now)
	if err == nil {
		resp.RefreshToken, err = e.storeRefresh(next, now)
	}
	if err != nil {
		return nil, 0, errf(http.StatusInternalServerError, "server_error", "%v", err)
	}
	return resp, 1, nil
}

func subset(sub, of []string) bool {
	set := make(map[string]bool, len(of))
	for _, s := range of {
		set[s] = true
	}
	for _, s := range sub {
		if !set[s] {
			return false
		}
	}
	return true
}

// issue returns a token response for one resource server, with a refresh
// token when offline access was asked for and is allowed.
func (e *Emulator) issue(a *app, subject, subType string, g *scopeGroup, expiry time.Duration, offline bool, domain string, now time.Time) (tokenResponse, error) {
	resp, err := e.issueToken(a, subject, subType, g, expiry, domain, now)
	if err != nil {
		return resp, err
	}
	allowRefresh := g.server == nil || g.server.AllowRefresh
	if offline && a.grants[GrantRefreshToken] && allowRefresh {
		resp.RefreshToken, err = e.storeRefresh(&refreshGrant{
			clientID: a.ClientID, subject: subject, subType: subType,
			server: g.key(), scopes: g.scopes, expiry: expiry,
			expires: now.Add(e.refreshLifetime),
		}, now)
	}
	return resp, err
}

// issueToken signs an access token for one resource server.
func (e *Emulator) issueToken(a *app, subject, subType string, g *scopeGroup, expiry time.Duration, domain string, now time.Time) (tokenResponse, error) {
	lifetime := e.domainLifetime
	audience := domain
	if g.server != nil {
		lifetime = g.server.AccessTokenLifetime
		audience = g.server.Audience
	}
	if a.AccessTokenLifetime > 0 {
		lifetime = min(lifetime, a.AccessTokenLifetime)
	}
	if expiry > 0 {
		lifetime = min(lifetime, expiry)
	}
	lifetime = clampLifetime(lifetime)
	jti, err := randomString(18)
	if err != nil {
		return tokenResponse{}, err
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(lifetime)
	signed, err := e.signer.sign(jwt.MapClaims{
		"iss":       e.issuer,
		"sub":       subject,
		"sub_type":  subType,
		"aud":       []string{audience},
		"exp":       exp.Unix(),
		"iat":       iat.Unix(),
		"scope":     strings.Join(g.scopes, " "),
		"jti":       jti,
		"client_id": a.ClientID,
		"tok_type":  "AT",
	})
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{AccessToken: signed, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second)}, nil
}

// storeRefresh stores g under a new refresh token and returns the token.
func (e *Emulator) storeRefresh(g *refreshGrant, now time.Time) (string, error) {
	rt, err := randomString(32)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.refresh) >= sweepThreshold {
		for k, old := range e.refresh {
			if !now.Before(old.expires) {
				delete(e.refresh, k)
			}
		}
	}
	e.refresh[refreshKey(rt)] = g
	return rt, nil
}

// refreshKey is the map key of a refresh token: its SHA-256, so that the
// tokens themselves are never kept.
func refreshKey(rt string) string {
	sum := sha256.Sum256([]byte(rt))
	return string(sum[:])
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("emulator: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
