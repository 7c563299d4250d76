// Package oauth is tokd's client of an OAuth2 token endpoint: an OCI IAM
// identity domain's /oauth2/v1/token, or any server implementing RFC 6749
// and RFC 7523.
//
// It signs assertions (assertion.go), authenticates the client with a
// secret or a client assertion (auth.go), speaks the jwt-bearer,
// client_credentials and refresh_token grants (this file), turns every
// failure into one typed *Error (errors.go) and reads the token file that
// the OCI Console's "Download token" button saves (tokfile.go).
//
// The package knows nothing of caches: each call is one token request.
package oauth

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/token"
)

// Grant types (RFC 6749 §4.4, §6; RFC 7523 §2.1).
const (
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// Token is an access token as received, with its absolute expiry.
type Token = token.Token

// Client sends token requests to one token endpoint.
type Client struct {
	TokenURL   string
	Auth       ClientAuth
	HTTPClient *http.Client     // nil: NewHTTPClient(nil, 0)
	Now        func() time.Time // nil: time.Now
	UserAgent  string           // empty: "tokd"
}

// MaxResponseBytes bounds the body read from a token endpoint.
const MaxResponseBytes = 1 << 20

// DefaultTimeout bounds one token request when the caller's context does not.
const DefaultTimeout = 30 * time.Second

// JWTBearer requests a token with the jwt-bearer grant: user is signed
// afresh for this request and sent as the assertion.
func (c *Client) JWTBearer(ctx context.Context, user *Assertion, scopes []string) (*Token, error) {
	signed, err := user.Sign(c.now())
	if err != nil {
		return nil, localError("user assertion", err)
	}
	form := url.Values{"grant_type": {GrantJWTBearer}, "assertion": {signed}}
	setScope(form, scopes)
	return c.do(ctx, form)
}

// ClientCredentials requests a token with the client_credentials grant.
func (c *Client) ClientCredentials(ctx context.Context, scopes []string) (*Token, error) {
	form := url.Values{"grant_type": {GrantClientCredentials}}
	setScope(form, scopes)
	return c.do(ctx, form)
}

// Refresh exchanges refreshToken for a new token. When the server rotates
// the refresh token the returned token carries the new one; otherwise it
// carries refreshToken again, so the result always holds the refresh token
// to use next. scopes may be nil (the original grant's scope).
func (c *Client) Refresh(ctx context.Context, refreshToken string, scopes []string) (*Token, error) {
	if refreshToken == "" {
		return nil, localError("refresh", errors.New("no refresh token"))
	}
	form := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {refreshToken}}
	setScope(form, scopes)
	tok, err := c.do(ctx, form)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken
	}
	return tok, nil
}

func setScope(form url.Values, scopes []string) {
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return defaultHTTPClient
}

var defaultHTTPClient = NewHTTPClient(nil, 0)

// do sends one token request and parses the answer.
func (c *Client) do(ctx context.Context, form url.Values) (*Token, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	h := make(http.Header)
	if c.Auth != nil {
		if err := c.Auth.Authenticate(h, form, c.now()); err != nil {
			return nil, localError("client authentication", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, localError("token request", err)
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	req.Header.Set("Accept", "application/json")
	ua := c.UserAgent
	if ua == "" {
		ua = "tokd"
	}
	req.Header.Set("User-Agent", ua)

	// expires_in counts from when the server issued the token, between
	// this moment and the answer's arrival: counting from here never
	// makes a token look longer-lived than it is, however slow the answer.
	sent := c.now()
	resp, err := c.httpClient().Do(req)
	if errors.Is(err, errRedirect) {
		return nil, localError("token request", errRedirect)
	}
	if err != nil {
		return nil, networkError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	received := c.now()
	if err != nil {
		return nil, networkError(fmt.Errorf("reading the response: %w", err))
	}
	if len(body) > MaxResponseBytes {
		tooLarge := fmt.Sprintf("response body larger than %d bytes", MaxResponseBytes)
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			// The status and headers still say whether and when to retry.
			e := ParseErrorResponse(resp.StatusCode, resp.Header, nil, received)
			e.Description = tooLarge
			return nil, e
		}
		return nil, &Error{StatusCode: resp.StatusCode, Description: tooLarge}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, parseErrorResponse(resp.StatusCode, resp.Header, body, received, credentialHider(h, form))
	}
	if resp.StatusCode == http.StatusOK && hasErrorField(body) {
		// Some servers answer errors with 200; the body says what it is.
		return nil, parseErrorResponse(resp.StatusCode, resp.Header, body, received, credentialHider(h, form))
	}
	tok, err := ParseTokenResponse(resp.StatusCode, body, sent)
	var oe *Error
	if errors.As(err, &oe) && oe.Retryable {
		oe.Description += " (" + contentType(resp.Header) + ")"
	}
	return tok, err
}

// errRedirect refuses redirects: the request carries credentials, and a
// moved endpoint is a configuration matter, not worth retrying.
var errRedirect = errors.New("token endpoint redirected; set token_url to the final address")

// redacted stands for a credential of the request in an error's text.
const redacted = "[redacted]"

// credentialHider returns a replacer that hides the credentials a token
// request carried (its assertions, refresh token, and the Authorization
// header with the secret inside it, as sent and as decoded) wherever an
// error answer quotes them: the error is logged and shown by tokctl
// status, and a debugging proxy or a chatty server may echo the request.
func credentialHider(h http.Header, form url.Values) *strings.Replacer {
	var secrets []string
	add := func(v string) {
		if v != "" {
			secrets = append(secrets, v, url.QueryEscape(v))
		}
	}
	for _, k := range []string{"assertion", "client_assertion", "refresh_token", "client_secret"} {
		add(form.Get(k))
	}
	if scheme, cred, ok := strings.Cut(h.Get("Authorization"), " "); ok {
		add(cred)
		if raw, err := base64.StdEncoding.DecodeString(cred); err == nil && strings.EqualFold(scheme, "Basic") {
			if _, secret, ok := strings.Cut(string(raw), ":"); ok {
				add(secret)
				if s, err := url.QueryUnescape(secret); err == nil {
					add(s)
				}
			}
		}
	}
	// Longest first, so that no shorter secret inside a longer one
	// leaves the rest of the longer one showing.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	secrets = slices.Compact(secrets)
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, redacted)
	}
	return strings.NewReplacer(pairs...)
}

// localError is a failure on tokd's side before or instead of a request:
// not worth retrying until the configuration changes.
func localError(what string, err error) *Error {
	return &Error{Description: what + " failed", Err: err}
}

// hasErrorField reports whether body is a JSON object with a string
// "error" member, the shape of an RFC 6749 §5.2 error.
func hasErrorField(body []byte) bool {
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal(body, &probe) == nil && jsonString(probe.Error) != ""
}

func contentType(h http.Header) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return cleanText(ct)
	}
	return "no content type"
}

// networkError wraps a transport failure as a retryable *Error, keeping
// the request URL's query out of the message.
func networkError(err error) *Error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = fmt.Errorf("%s %s: %w", strings.ToLower(uerr.Op), redactURL(uerr.URL), uerr.Err)
	}
	desc := "network error"
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		desc = "timeout"
	}
	return &Error{Description: desc, Retryable: true, Err: err}
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// tokenResponse is the RFC 6749 §5.1 success body, plus the identity
// domain's multi-resource-server form.
type tokenResponse struct {
	AccessToken    string          `json:"access_token"`
	TokenType      string          `json:"token_type"`
	ExpiresIn      json.RawMessage `json:"expires_in"`
	RefreshToken   string          `json:"refresh_token"`
	Scope          string          `json:"scope"`
	TokenResponses json.RawMessage `json:"tokenResponses"`
}

// maxLifetime bounds a token lifetime the client accepts (the identity
// domain's maximum is one year).
const maxLifetime = 366 * 24 * time.Hour

// ParseTokenResponse reads a 2xx token response to a request sent at now
// (Client counts from the request, not the answer, so that a slow answer
// never lengthens the token's life). The expiry is absolute: now +
// expires_in, or the access token's JWT exp when
// expires_in is absent. A token_type other than Bearer (any case) is
// refused.
func ParseTokenResponse(status int, body []byte, now time.Time) (*Token, error) {
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, &Error{StatusCode: status, Retryable: true,
			Description: fmt.Sprintf("unreadable token response (%d bytes): %v", len(body), err)}
	}
	if len(r.TokenResponses) > 0 && string(r.TokenResponses) != "null" {
		return nil, &Error{StatusCode: status, Description: multiResourceHelp, Err: ErrMultiResource}
	}
	if r.AccessToken == "" {
		return nil, &Error{StatusCode: status, Retryable: true, Description: "token response without access_token"}
	}
	if !isVSCHAR(r.AccessToken) {
		return nil, &Error{StatusCode: status, Retryable: true,
			Description: "token response's access_token holds characters outside VSCHAR (RFC 6749 A.12)"}
	}
	if r.RefreshToken != "" && !isVSCHAR(r.RefreshToken) {
		return nil, &Error{StatusCode: status, Retryable: true,
			Description: "token response's refresh_token holds characters outside VSCHAR (RFC 6749 A.17)"}
	}
	tok := &Token{
		AccessToken:  r.AccessToken,
		TokenType:    r.TokenType,
		RefreshToken: r.RefreshToken,
		Scope:        r.Scope,
		IssuedAt:     now,
	}
	// RFC 6749 §7.1: a client must not use a token whose type it does not
	// understand, and everything tokd serves to is a Bearer user (RFC 6750).
	// A missing token_type is taken as Bearer, as golang.org/x/oauth2 does.
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		return nil, &Error{StatusCode: status,
			Description: fmt.Sprintf("token_type %.40q is not Bearer, the only type tokd can serve (RFC 6749 §7.1)", cleanText(tok.TokenType))}
	}
	tok.TokenType = "Bearer"
	lifetime, err := parseExpiresIn(r.ExpiresIn)
	if err != nil {
		return nil, &Error{StatusCode: status, Description: err.Error()}
	}
	if lifetime > 0 {
		tok.Expiry = now.Add(lifetime)
		return tok, nil
	}
	exp, err := JWTExpiry(r.AccessToken)
	if err != nil {
		return nil, &Error{StatusCode: status,
			Description: "token response has no expires_in and the access token carries no readable exp: " + err.Error()}
	}
	// The same floor as expires_in's: a token that lives under a second
	// would be fetched again by every caller.
	if exp.Sub(now) < time.Second {
		return nil, &Error{StatusCode: status,
			Description: fmt.Sprintf("token response has no expires_in and the access token's exp is less than 1s after the request (%s)", exp.UTC().Format(time.RFC3339))}
	}
	tok.Expiry = exp
	return tok, nil
}

// parseExpiresIn reads expires_in as a JSON number or numeric string. It
// returns 0 when the field is absent.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if s := jsonString(raw); s != "" {
		text = s
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, fmt.Errorf("expires_in is not a number: %.40q", string(raw))
	}
	d := time.Duration(secs * float64(time.Second))
	if secs <= 0 || d > maxLifetime || d < time.Second {
		return 0, fmt.Errorf("expires_in out of range: %s", text)
	}
	return d, nil
}

// JWTExpiry returns the exp claim of a JWT without verifying its
// signature: tokd only needs to know when the token stops being useful.
func JWTExpiry(token string) (time.Time, error) {
	_, exp, err := jwtTimes(token)
	return exp, err
}

// jwtTimes returns the iat (zero when absent) and exp claims of an
// unverified JWT; a missing exp is an error.
func jwtTimes(token string) (iat, exp time.Time, err error) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		return iat, exp, fmt.Errorf("not a JWT: %w", err)
	}
	e, err := claims.GetExpirationTime()
	if err != nil {
		return iat, exp, fmt.Errorf("bad exp claim: %w", err)
	}
	if e == nil {
		return iat, exp, errors.New("no exp claim")
	}
	if i, err := claims.GetIssuedAt(); err == nil && i != nil {
		iat = i.Time
	}
	return iat, e.Time, nil
}

// MaxConnsPerHost bounds the connections a transport of NewTransport
// opens to one token endpoint; further requests wait for one of them, and
// the wait counts against each request's timeout. 1,000 profiles
// refreshing together then use 16 connections rather than 1,000 (each with
// two goroutines, two 4 KiB buffers and a file descriptor). 16 requests in
// flight at ~0.1 s each pass ~160 requests a second, above every identity
// domain type's token-endpoint limit (10 to 65 a second), so the bound
// does not slow tokd below what the domain admits; a burst of 1,000 drains
// in ~6 s, inside the default 30 s timeout.
const MaxConnsPerHost = 16

// NewTransport returns an HTTP transport for token requests, to be shared
// by every client whose requests trust the same roots: proxies from
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (read once per process), TLS 1.2 or
// later against the system roots plus extraRoots, bounded dial and TLS
// handshake times, at most MaxConnsPerHost connections to one host, all of
// which it may keep idle for 90 s for the next refreshes. The time a
// request may take is the client's (NewHTTPClientWith).
func NewTransport(extraRoots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: extraRoots},
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    MaxConnsPerHost,
		MaxConnsPerHost:        MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
}

// NewHTTPClientWith returns the HTTP client for token requests sent
// through tr, which may be shared: timeout bounds each whole request,
// waiting for a connection included (0 means DefaultTimeout), and
// redirects are refused.
func NewHTTPClientWith(tr http.RoundTripper, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
}

// NewHTTPClient returns an HTTP client for token requests with a
// transport of its own (NewTransport), which also bounds the wait for the
// response's headers by timeout. timeout 0 means DefaultTimeout.
func NewHTTPClient(extraRoots *x509.CertPool, timeout time.Duration) *http.Client {
	c := NewHTTPClientWith(nil, timeout)
	tr := NewTransport(extraRoots)
	tr.ResponseHeaderTimeout = c.Timeout
	c.Transport = tr
	return c
}

// isVSCHAR reports whether s is 1*VSCHAR, the syntax of RFC 6749's
// access and refresh tokens (Appendix A.12, A.17): printable ASCII and
// space, so no line break can end a line of a credential helper's answer.
func isVSCHAR(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}
