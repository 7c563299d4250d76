package oauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

func key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	testKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	return testKey
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// signedJWT returns an unverifiable-but-parseable JWT with the given claims.
func signedJWT(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAssertionSign(t *testing.T) {
	a := &Assertion{
		Issuer:   "client-1",
		Subject:  "ci-bot",
		Audience: []string{"https://idcs.example.com/", "https://identity.oraclecloud.com/"},
		Lifetime: 5 * time.Minute,
		Key:      key(t),
		KeyID:    "ci-cert",
	}
	seen := map[string]bool{}
	for range 3 {
		s, err := a.Sign(t0)
		if err != nil {
			t.Fatal(err)
		}
		claims := jwt.MapClaims{}
		tok, err := jwt.NewParser(jwt.WithTimeFunc(fixedNow)).ParseWithClaims(s, claims,
			func(*jwt.Token) (any, error) { return &key(t).PublicKey, nil })
		if err != nil {
			t.Fatalf("assertion does not verify: %v", err)
		}
		if got := tok.Header["alg"]; got != "RS256" {
			t.Errorf("alg = %v, want RS256", got)
		}
		if got := tok.Header["kid"]; got != "ci-cert" {
			t.Errorf("kid = %v, want ci-cert", got)
		}
		if _, ok := tok.Header["x5t"]; ok {
			t.Errorf("x5t set without a certificate")
		}
		want := jwt.MapClaims{
			"iss": "client-1",
			"sub": "ci-bot",
			"aud": []any{"https://idcs.example.com/", "https://identity.oraclecloud.com/"},
			"iat": float64(t0.Add(-IssuedAtSkew).Unix()),
			"exp": float64(t0.Add(-IssuedAtSkew + 5*time.Minute).Unix()),
		}
		jti, _ := claims["jti"].(string)
		delete(claims, "jti")
		if diff := cmp.Diff(want, claims); diff != "" {
			t.Errorf("claims (-want +got):\n%s", diff)
		}
		if len(jti) < 16 || seen[jti] {
			t.Errorf("jti %q is short or reused", jti)
		}
		seen[jti] = true
	}
}

// TestAssertionLifetime checks that exp - iat is the configured lifetime,
// as the README and Assertion.Lifetime say, and not the lifetime plus the
// iat backdating: a server capping exp - iat at the configured maximum
// (the emulator caps it at 1h, the longest lifetime config allows) would
// refuse the longer one.
func TestAssertionLifetime(t *testing.T) {
	for _, lifetime := range []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, time.Hour} {
		t.Run(lifetime.String(), func(t *testing.T) {
			a := &Assertion{Issuer: "c", Subject: "u", Audience: []string{"a"}, Lifetime: lifetime, Key: key(t), KeyID: "k"}
			s, err := a.Sign(t0)
			if err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(s, claims); err != nil {
				t.Fatal(err)
			}
			iat, _ := claims.GetIssuedAt()
			exp, _ := claims.GetExpirationTime()
			if got := exp.Sub(iat.Time); got != lifetime {
				t.Errorf("exp - iat = %s, want %s", got, lifetime)
			}
			if iat.After(t0) || !exp.After(t0) {
				t.Errorf("iat %s, exp %s: want iat <= now < exp (now %s)", iat, exp, t0)
			}
		})
	}
}

func TestAssertionSignHeaders(t *testing.T) {
	tests := []struct {
		name    string
		kid     string
		x5t     string
		wantErr bool
	}{
		{name: "kid only", kid: "alias"},
		{name: "x5t only", x5t: "thumb"},
		{name: "both", kid: "alias", x5t: "thumb"},
		{name: "neither", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Assertion{Issuer: "c", Subject: "u", Audience: []string{"a"}, Key: key(t), KeyID: tt.kid, X5T: tt.x5t}
			s, err := a.Sign(t0)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Sign succeeded without kid or x5t")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := jwt.NewParser().ParseUnverified(s, jwt.MapClaims{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{"kid": tok.Header["kid"], "x5t": tok.Header["x5t"]}
			want := map[string]any{"kid": nilIfEmpty(tt.kid), "x5t": nilIfEmpty(tt.x5t)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestSecretAuthEncodesBeforeBase64(t *testing.T) {
	h := make(http.Header)
	if err := (SecretAuth{ClientID: "id:1", Secret: "s3cr+t/=&%"}).Authenticate(h, nil, t0); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.Get("Authorization"), "Basic "))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(raw), "id%3A1:s3cr%2Bt%2F%3D%26%25"; got != want {
		t.Errorf("basic credentials = %q, want %q", got, want)
	}
	id, _ := url.QueryUnescape(strings.SplitN(string(raw), ":", 2)[0])
	secret, _ := url.QueryUnescape(strings.SplitN(string(raw), ":", 2)[1])
	if id != "id:1" || secret != "s3cr+t/=&%" {
		t.Errorf("decoded back to %q, %q", id, secret)
	}
}

// recorder is a token endpoint that records each request and answers with
// the next canned response.
type recorder struct {
	mu    sync.Mutex
	forms []url.Values
	heads []http.Header
	reply func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	rec.mu.Lock()
	rec.forms = append(rec.forms, r.PostForm)
	rec.heads = append(rec.heads, r.Header.Clone())
	rec.mu.Unlock()
	rec.reply(w, r)
}

func jsonReply(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func newTestClient(t *testing.T, rec *recorder) *Client {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return &Client{
		TokenURL: srv.URL + "/oauth2/v1/token",
		Auth:     SecretAuth{ClientID: "cid", Secret: "sec"},
		Now:      fixedNow,
	}
}

func TestGrantRequests(t *testing.T) {
	user := &Assertion{Issuer: "cid", Subject: "bob", Audience: []string{"aud"}, Key: key(t), KeyID: "k"}
	tests := []struct {
		name string
		call func(c *Client) (*Token, error)
		want url.Values // form fields other than assertion
	}{
		{
			name: "jwt-bearer",
			call: func(c *Client) (*Token, error) {
				return c.JWTBearer(context.Background(), user, []string{"urn:opc:idm:__myscopes__", "offline_access"})
			},
			want: url.Values{"grant_type": {GrantJWTBearer}, "scope": {"urn:opc:idm:__myscopes__ offline_access"}},
		},
		{
			name: "client_credentials",
			call: func(c *Client) (*Token, error) {
				return c.ClientCredentials(context.Background(), []string{"https://api.example.com/read"})
			},
			want: url.Values{"grant_type": {"client_credentials"}, "scope": {"https://api.example.com/read"}},
		},
		{
			name: "refresh_token without scope",
			call: func(c *Client) (*Token, error) { return c.Refresh(context.Background(), "rt-1", nil) },
			want: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{reply: jsonReply(200, `{"access_token":"at","token_type":"bearer","expires_in":3600}`)}
			c := newTestClient(t, rec)
			tok, err := tt.call(c)
			if err != nil {
				t.Fatal(err)
			}
			form := rec.forms[0]
			if tt.want.Get("grant_type") == GrantJWTBearer {
				if form.Get("assertion") == "" {
					t.Error("jwt-bearer request without assertion")
				}
				form.Del("assertion")
			}
			if diff := cmp.Diff(tt.want, form); diff != "" {
				t.Errorf("form (-want +got):\n%s", diff)
			}
			h := rec.heads[0]
			if got := h.Get("Content-Type"); got != "application/x-www-form-urlencoded;charset=UTF-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if !strings.HasPrefix(h.Get("Authorization"), "Basic ") {
				t.Errorf("Authorization = %q, want Basic", h.Get("Authorization"))
			}
			want := &Token{AccessToken: "at", TokenType: "Bearer", IssuedAt: t0, Expiry: t0.Add(time.Hour)}
			if tt.want.Get("grant_type") == "refresh_token" {
				want.RefreshToken = "rt-1" // kept: the server did not rotate it
			}
			if diff := cmp.Diff(want, tok); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	rec := &recorder{reply: jsonReply(200, `{"access_token":"at2","expires_in":60,"refresh_token":"rt-2"}`)}
	tok, err := newTestClient(t, rec).Refresh(context.Background(), "rt-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "rt-2" {
		t.Errorf("refresh token = %q, want the rotated rt-2", tok.RefreshToken)
	}
}

func TestAssertionAuthForm(t *testing.T) {
	rec := &recorder{reply: jsonReply(200, `{"access_token":"at","expires_in":60}`)}
	c := newTestClient(t, rec)
	c.Auth = AssertionAuth{Assertion: Assertion{Issuer: "cid", Subject: "cid", Audience: []string{"aud"}, Key: key(t), KeyID: "ck"}}
	if _, err := c.ClientCredentials(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	form, h := rec.forms[0], rec.heads[0]
	if h.Get("Authorization") != "" {
		t.Errorf("client assertion request also sent Authorization")
	}
	if form.Get("client_id") != "cid" || form.Get("client_assertion_type") != ClientAssertionType {
		t.Errorf("form = %v", form)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.NewParser(jwt.WithTimeFunc(fixedNow)).ParseWithClaims(form.Get("client_assertion"), claims,
		func(*jwt.Token) (any, error) { return &key(t).PublicKey, nil }); err != nil {
		t.Fatal(err)
	}
	if claims["iss"] != "cid" || claims["sub"] != "cid" {
		t.Errorf("client assertion iss/sub = %v/%v, want cid/cid", claims["iss"], claims["sub"])
	}
}

func TestParseTokenResponse(t *testing.T) {
	exp := t0.Add(20 * time.Minute).Truncate(time.Second)
	jwtTok := signedJWT(t, jwt.MapClaims{"exp": exp.Unix(), "sub": "x"})
	jwtAtOnce := signedJWT(t, jwt.MapClaims{"exp": t0.Unix(), "sub": "x"})
	jwtPast := signedJWT(t, jwt.MapClaims{"exp": t0.Add(-time.Hour).Unix(), "sub": "x"})
	tests := []struct {
		name      string
		body      string
		want      *Token
		wantErr   string
		retryable bool
		multi     bool
	}{
		{
			name: "expires_in number",
			body: `{"access_token":"a","token_type":"Bearer","expires_in":3600,"scope":"s1 s2"}`,
			want: &Token{AccessToken: "a", TokenType: "Bearer", Scope: "s1 s2", IssuedAt: t0, Expiry: t0.Add(time.Hour)},
		},
		{
			name: "expires_in string",
			body: `{"access_token":"a","token_type":"bearer","expires_in":"120"}`,
			want: &Token{AccessToken: "a", TokenType: "Bearer", IssuedAt: t0, Expiry: t0.Add(2 * time.Minute)},
		},
		{
			name: "expiry from the JWT when expires_in is missing",
			body: fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer"}`, jwtTok),
			want: &Token{AccessToken: jwtTok, TokenType: "Bearer", IssuedAt: t0, Expiry: exp},
		},
		{
			name: "token_type in capitals",
			body: `{"access_token":"a","token_type":"BEARER","expires_in":60,"refresh_token":"r"}`,
			want: &Token{AccessToken: "a", TokenType: "Bearer", RefreshToken: "r", IssuedAt: t0, Expiry: t0.Add(time.Minute)},
		},
		// RFC 6749 §7.1: a client must not use a token whose type it does
		// not understand; tokd serves every token as a Bearer token.
		{name: "DPoP token refused", body: `{"access_token":"a","token_type":"DPoP","expires_in":60}`, wantErr: `token_type "DPoP"`},
		{name: "mac token refused", body: `{"access_token":"a","token_type":"mac","expires_in":60}`, wantErr: `token_type "mac"`},
		// RFC 6749 A.12 and A.17: both tokens are 1*VSCHAR (%x20-7E). A
		// line break would add lines to git's credential protocol.
		{name: "access token with a line break", body: `{"access_token":"a\nusername=x","token_type":"Bearer","expires_in":60}`, wantErr: "access_token", retryable: true},
		{name: "access token with a NUL", body: `{"access_token":"a\u0000","expires_in":60}`, wantErr: "access_token", retryable: true},
		{name: "access token not ASCII", body: `{"access_token":"caf\u00e9","expires_in":60}`, wantErr: "access_token", retryable: true},
		{name: "refresh token with a line break", body: `{"access_token":"a","expires_in":60,"refresh_token":"r\r\nx"}`, wantErr: "refresh_token", retryable: true},
		{name: "non-string token_type", body: `{"access_token":"a","token_type":1,"expires_in":60}`, wantErr: "unreadable token response", retryable: true},
		{name: "opaque token without expires_in", body: `{"access_token":"opaque"}`, wantErr: "no expires_in"},
		// The JWT's exp obeys expires_in's bounds: at least 1 s ahead.
		{name: "JWT expiring as it arrives", body: fmt.Sprintf(`{"access_token":%q}`, jwtAtOnce), wantErr: "exp is less than 1s"},
		{name: "JWT already expired", body: fmt.Sprintf(`{"access_token":%q}`, jwtPast), wantErr: "exp is less than 1s"},
		{name: "negative expires_in", body: `{"access_token":"a","expires_in":-5}`, wantErr: "out of range"},
		{name: "expires_in not a number", body: `{"access_token":"a","expires_in":"soon"}`, wantErr: "not a number"},
		{name: "no access_token", body: `{"token_type":"Bearer","expires_in":60}`, wantErr: "without access_token", retryable: true},
		{name: "garbage", body: `<html>proxy login</html>`, wantErr: "unreadable token response", retryable: true},
		{name: "truncated", body: `{"access_token":"a","expi`, wantErr: "unreadable token response", retryable: true},
		{
			name:    "several resource servers",
			body:    `{"tokenResponses":[{"access_token":"a","expires_in":60},{"access_token":"b","expires_in":60}]}`,
			wantErr: "urn:opc:resource:multiresourcescope",
			multi:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokenResponse(200, []byte(tt.body), t0)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("token (-want +got):\n%s", diff)
				}
				return
			}
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantErr)
			}
			if oe.Retryable != tt.retryable {
				t.Errorf("Retryable = %v, want %v", oe.Retryable, tt.retryable)
			}
			if got := errors.Is(err, ErrMultiResource); got != tt.multi {
				t.Errorf("errors.Is(err, ErrMultiResource) = %v, want %v", got, tt.multi)
			}
		})
	}
}

func TestParseErrorResponse(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Error
	}{
		{
			name: "invalid_grant", status: 400,
			body: `{"error":"invalid_grant","error_description":"assertion expired"}`,
			want: Error{StatusCode: 400, Code: "invalid_grant", Description: "assertion expired"},
		},
		{
			name: "invalid_client 401", status: 401,
			body: `{"error":"invalid_client","error_description":"Client authentication failed."}`,
			want: Error{StatusCode: 401, Code: "invalid_client", Description: "Client authentication failed."},
		},
		{
			name: "invalid_scope", status: 400, body: `{"error":"invalid_scope"}`,
			want: Error{StatusCode: 400, Code: "invalid_scope"},
		},
		{
			name: "unsupported_grant_type", status: 400, body: `{"error":"unsupported_grant_type"}`,
			want: Error{StatusCode: 400, Code: "unsupported_grant_type"},
		},
		{
			name: "multi-resource invalid_scope explained", status: 400,
			body: `{"error":"invalid_scope","error_description":"Scopes belong to multiple resource servers."}`,
			want: Error{StatusCode: 400, Code: "invalid_scope",
				Description: "Scopes belong to multiple resource servers.: " + multiResourceHelp},
		},
		{
			name: "429 with seconds", status: 429, header: http.Header{"Retry-After": {"7"}},
			body: `{"error":"too_many_requests"}`,
			want: Error{StatusCode: 429, Code: "too_many_requests", Retryable: true, RetryAfter: 7 * time.Second},
		},
		{
			name: "429 with an HTTP date", status: 429,
			header: http.Header{"Retry-After": {t0.Add(90 * time.Second).Format(http.TimeFormat)}},
			want: Error{StatusCode: 429, Retryable: true, RetryAfter: 90 * time.Second,
				Description: "too many requests with an empty body"},
		},
		{
			// RFC 6585 §4: 429 is the rate limit, whatever error code the
			// body carries (AWS's sign-in service answers invalid_request).
			name: "429 with invalid_request", status: 429, header: http.Header{"Retry-After": {"3"}},
			body: `{"error":"invalid_request","error_description":"Too many requests"}`,
			want: Error{StatusCode: 429, Code: "invalid_request", Description: "Too many requests", Retryable: true, RetryAfter: 3 * time.Second},
		},
		{
			name: "503 html", status: 503, header: http.Header{"Content-Type": {"text/html"}},
			body: "<html>\n<b>down</b>\n</html>",
			want: Error{StatusCode: 503, Retryable: true,
				Description: `service unavailable with a non-OAuth body (text/html, 26 bytes): "<html> <b>down</b> </html>"`},
		},
		{
			name: "other invalid_scope not explained as multi-resource", status: 400,
			body: `{"error":"invalid_scope","error_description":"the resource server X does not exist"}`,
			want: Error{StatusCode: 400, Code: "invalid_scope", Description: "the resource server X does not exist"},
		},
		{
			name: "500 server_error", status: 500, body: `{"error":"server_error"}`,
			want: Error{StatusCode: 500, Code: "server_error", Retryable: true},
		},
		{
			name: "502 with invalid_grant stays permanent", status: 502, body: `{"error":"invalid_grant"}`,
			want: Error{StatusCode: 502, Code: "invalid_grant"},
		},
		{
			name: "temporarily_unavailable on 400", status: 400, body: `{"error":"temporarily_unavailable"}`,
			want: Error{StatusCode: 400, Code: "temporarily_unavailable", Retryable: true},
		},
		{
			name: "error that is not a string", status: 400, body: `{"error":{"code":42}}`,
			want: Error{StatusCode: 400, Description: `bad request with a non-OAuth body (no content type, 21 bytes): "{\"error\":{\"code\":42}}"`},
		},
		{
			name: "control characters cleaned", status: 400, body: "{\"error\":\"invalid_grant\",\"error_description\":\"a\\u001b[31mb\\nc\"}",
			want: Error{StatusCode: 400, Code: "invalid_grant", Description: "a [31mb c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			got := ParseErrorResponse(tt.status, h, []byte(tt.body), t0)
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"120", 2 * time.Minute},
		{"999999999", time.Hour},
		{t0.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{t0.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, t0); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{StatusCode: 400, Code: "invalid_grant", Description: "bad"}, "token endpoint: invalid_grant: bad (HTTP 400)"},
		{&Error{StatusCode: 429}, "token endpoint: request failed (HTTP 429)"},
		{&Error{Description: "timeout", Err: context.DeadlineExceeded}, "token endpoint: timeout: context deadline exceeded"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestNetworkErrorsAreRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there any more
	c := &Client{TokenURL: addr + "/token?secret=x", Auth: SecretAuth{ClientID: "c", Secret: "s"}}
	_, err := c.ClientCredentials(context.Background(), nil)
	var oe *Error
	if !errors.As(err, &oe) || !oe.Retryable || oe.StatusCode != 0 {
		t.Fatalf("err = %#v, want a retryable *Error without status", err)
	}
	if strings.Contains(err.Error(), "secret=x") {
		t.Errorf("error %q leaks the URL query", err)
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := &Client{TokenURL: srv.URL, Auth: SecretAuth{ClientID: "c", Secret: "s"}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.ClientCredentials(ctx, nil)
	var oe *Error
	if !errors.As(err, &oe) || !oe.Retryable || oe.Description != "timeout" {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err does not wrap context.DeadlineExceeded: %v", err)
	}
}

func TestResponseBodyBounded(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", MaxResponseBytes) + `","expires_in":60}`
	rec := &recorder{reply: jsonReply(200, big)}
	_, err := newTestClient(t, rec).ClientCredentials(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a body-too-large error", err)
	}
}

// TestOversizedErrorKeepsRetryAfter checks that an error answer whose
// body is too large to read is still classified by its status and
// headers: a 429 or 503 with a Retry-After stays retryable and keeps it.
func TestOversizedErrorKeepsRetryAfter(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			rec := &recorder{reply: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "30")
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(status)
				io.WriteString(w, strings.Repeat("<p>busy</p>", MaxResponseBytes/8))
			}}
			_, err := newTestClient(t, rec).ClientCredentials(context.Background(), nil)
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), "larger than") {
				t.Errorf("err = %v, want it to say the body was too large", err)
			}
			if oe.StatusCode != status || !oe.Retryable || oe.RetryAfter != 30*time.Second {
				t.Errorf("status %d, Retryable %v, RetryAfter %v; want %d, true, 30s", oe.StatusCode, oe.Retryable, oe.RetryAfter, status)
			}
		})
	}
}

func TestRedirectRefused(t *testing.T) {
	rec := &recorder{reply: func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/token", http.StatusTemporaryRedirect)
	}}
	_, err := newTestClient(t, rec).ClientCredentials(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "redirected") {
		t.Fatalf("err = %v, want the redirect refused", err)
	}
	if len(rec.forms) != 1 {
		t.Errorf("%d requests reached the server, want 1", len(rec.forms))
	}
	var oe *Error
	if !errors.As(err, &oe) || oe.Retryable {
		t.Errorf("err = %#v, want a permanent *Error", err)
	}
}

// TestErrorTextHidesRequestCredentials checks that an error answer
// echoing what tokd sent (a proxy's or framework's debug page, or an
// error_description quoting the refresh token) does not carry the
// request's refresh token, client secret or assertions into the error,
// which the cache logs and tokctl status shows.
func TestErrorTextHidesRequestCredentials(t *testing.T) {
	const (
		secret  = "s3cr+t/=&%-of-the-client"
		refresh = "rt/+=-refresh-token-value-1234"
	)
	user := &Assertion{Issuer: "cid", Subject: "bob", Audience: []string{"aud"}, Key: key(t), KeyID: "k"}
	echoRequest := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "bad request\nAuthorization: %s\n%s", r.Header.Get("Authorization"), r.PostForm.Encode())
	}
	echoJSON := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, pw, _ := r.BasicAuth()
		pw, _ = url.QueryUnescape(pw)
		fmt.Fprintf(w, `{"error":"invalid_grant","error_description":"bad grant %s %s for client secret %s"}`,
			r.PostForm.Get("refresh_token"), r.PostForm.Get("assertion")+r.PostForm.Get("client_assertion"), pw)
	}
	tests := []struct {
		name  string
		reply func(http.ResponseWriter, *http.Request)
		auth  ClientAuth
		call  func(c *Client) error
	}{
		{name: "refresh, echoed request", reply: echoRequest, auth: SecretAuth{ClientID: "cid", Secret: secret},
			call: func(c *Client) error { _, err := c.Refresh(context.Background(), refresh, nil); return err }},
		{name: "refresh, echoed in error_description", reply: echoJSON, auth: SecretAuth{ClientID: "cid", Secret: secret},
			call: func(c *Client) error { _, err := c.Refresh(context.Background(), refresh, nil); return err }},
		{name: "jwt-bearer, echoed in error_description", reply: echoJSON, auth: SecretAuth{ClientID: "cid", Secret: secret},
			call: func(c *Client) error { _, err := c.JWTBearer(context.Background(), user, nil); return err }},
		{name: "client assertion, echoed in error_description", reply: echoJSON,
			auth: AssertionAuth{Assertion: Assertion{Issuer: "cid", Subject: "cid", Audience: []string{"aud"}, Key: key(t), KeyID: "ck"}},
			call: func(c *Client) error { _, err := c.ClientCredentials(context.Background(), nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{reply: tt.reply}
			c := newTestClient(t, rec)
			c.Auth = tt.auth
			err := tt.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			form, h := rec.forms[0], rec.heads[0]
			hidden := []string{secret, url.QueryEscape(secret), refresh, url.QueryEscape(refresh)}
			if basic, ok := strings.CutPrefix(h.Get("Authorization"), "Basic "); ok {
				hidden = append(hidden, basic)
			}
			for _, k := range []string{"assertion", "client_assertion"} {
				if jwt := form.Get(k); jwt != "" {
					sig := jwt[strings.LastIndex(jwt, ".")+1:]
					hidden = append(hidden, sig[:16])
				}
			}
			for _, v := range hidden {
				if strings.Contains(msg, v) {
					t.Errorf("error shows %q:\n%s", v, msg)
				}
			}
			if !strings.Contains(msg, "[redacted]") {
				t.Errorf("error does not say what it hid: %s", msg)
			}
		})
	}
}

func TestErrorIn200Body(t *testing.T) {
	rec := &recorder{reply: jsonReply(200, `{"error":"invalid_grant","error_description":"user locked"}`)}
	_, err := newTestClient(t, rec).ClientCredentials(context.Background(), nil)
	var oe *Error
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := &Error{StatusCode: 200, Code: "invalid_grant", Description: "user locked"}
	if diff := cmp.Diff(want, oe); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestGarbage200NamesContentType(t *testing.T) {
	rec := &recorder{reply: func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html>captive portal</html>")
	}}
	_, err := newTestClient(t, rec).ClientCredentials(context.Background(), nil)
	var oe *Error
	if !errors.As(err, &oe) || !oe.Retryable || !strings.Contains(err.Error(), "text/html") {
		t.Fatalf("err = %v, want a retryable error naming text/html", err)
	}
}

func TestLocalFailuresAreTypedAndPermanent(t *testing.T) {
	c := &Client{TokenURL: "http://127.0.0.1:1/token", Auth: AssertionAuth{Assertion: Assertion{Issuer: "c"}}}
	tests := []struct {
		name string
		call func() error
	}{
		{"client assertion without key", func() error { _, err := c.ClientCredentials(context.Background(), nil); return err }},
		{"user assertion without key", func() error { _, err := c.JWTBearer(context.Background(), &Assertion{}, nil); return err }},
		{"refresh without token", func() error { _, err := c.Refresh(context.Background(), "", nil); return err }},
		{"bad URL", func() error {
			_, err := (&Client{TokenURL: "://x"}).ClientCredentials(context.Background(), nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var oe *Error
			if !errors.As(err, &oe) || oe.Retryable {
				t.Fatalf("err = %#v, want a permanent *Error", err)
			}
		})
	}
}

// TestProxyFromEnvironment runs in a child process because net/http reads
// the proxy variables once per process.
func TestProxyFromEnvironment(t *testing.T) {
	if os.Getenv("TOKD_PROXY_CHILD") == "1" {
		c := &Client{TokenURL: os.Getenv("TOKD_PROXY_TARGET"), Auth: SecretAuth{ClientID: "c", Secret: "s"}}
		tok, err := c.ClientCredentials(context.Background(), nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("token:", tok.AccessToken)
		os.Exit(0)
	}
	var mu sync.Mutex
	var proxied []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.Method == http.MethodConnect {
			proxied = append(proxied, "CONNECT "+r.Host)
		} else {
			proxied = append(proxied, r.URL.String())
		}
		mu.Unlock()
		if r.Method == http.MethodConnect {
			http.Error(w, "no tunnels here", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"via-proxy","expires_in":60}`)
	}))
	defer proxy.Close()

	tests := []struct {
		name      string
		target    string
		noProxy   string
		wantProxy string // what the proxy saw; "" for nothing
	}{
		{name: "HTTP_PROXY", target: "http://idcs.example.invalid/oauth2/v1/token",
			wantProxy: "http://idcs.example.invalid/oauth2/v1/token"},
		{name: "HTTPS_PROXY tunnels", target: "https://idcs.example.invalid/oauth2/v1/token",
			wantProxy: "CONNECT idcs.example.invalid:443"},
		{name: "NO_PROXY matches", target: "https://idcs.example.invalid/oauth2/v1/token",
			noProxy: "idcs.example.invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			proxied = nil
			mu.Unlock()
			cmd := exec.Command(os.Args[0], "-test.run=^TestProxyFromEnvironment$")
			cmd.Env = append(os.Environ(),
				"TOKD_PROXY_CHILD=1",
				"TOKD_PROXY_TARGET="+tt.target,
				"HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL,
				"HTTPS_PROXY="+proxy.URL, "https_proxy="+proxy.URL,
				"NO_PROXY="+tt.noProxy, "no_proxy="+tt.noProxy)
			out, err := cmd.CombinedOutput()
			mu.Lock()
			defer mu.Unlock()
			if tt.wantProxy == "" {
				if err == nil || len(proxied) != 0 {
					t.Errorf("NO_PROXY ignored: err=%v proxied=%v\n%s", err, proxied, out)
				}
				return
			}
			if len(proxied) != 1 || proxied[0] != tt.wantProxy {
				t.Errorf("proxy saw %v, want [%s]", proxied, tt.wantProxy)
			}
			if strings.HasPrefix(tt.target, "http:") && (err != nil || !strings.Contains(string(out), "token: via-proxy")) {
				t.Errorf("child failed: %v\n%s", err, out)
			}
		})
	}
}

// TestExpiryCountedFromTheRequest: expires_in counts from when the server
// issued the token, somewhere between the request and its answer, so the
// expiry is counted from the request: an answer that is slow to arrive
// (a proxy, a loaded domain) must not make tokd believe the token lives
// longer than it does, and serve it past its real end.
func TestExpiryCountedFromTheRequest(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	rec := &recorder{reply: func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now = now.Add(25 * time.Second) // the answer takes 25 s to come back
		mu.Unlock()
		jsonReply(200, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)(w, r)
	}}
	c := newTestClient(t, rec)
	c.Now = clock
	tok, err := c.ClientCredentials(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour); !tok.Expiry.Equal(want) || !tok.IssuedAt.Equal(t0) {
		t.Errorf("issued %v, expires %v; want %v and %v (counted from the request, not the answer 25 s later)",
			tok.IssuedAt, tok.Expiry, t0, want)
	}
}
