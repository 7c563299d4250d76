package oauth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
)

// The emulator's rules, as tokd meets them, are tested here against
// tokd's own client; the rules themselves are tested in package emulator.

const (
	emuClient   = "0123456789abcdef0123456789abcdef"
	emuSecret   = "s3cr+t/=&"
	emuAlias    = "tokd-key"
	emuUser     = "alice@example.com"
	emuAPI      = "https://api.example.com/"
	emuOther    = "https://other.example.com/"
	emuRead     = emuAPI + "read"
	emuOtherRd  = emuOther + "read"
	emuMultiRes = "urn:opc:resource:multiresourcescope"
)

var (
	emuKeysOnce sync.Once
	emuKeys     [3]*rsa.PrivateKey // app key, emulator signing key, stranger
)

func emuKey(i int) *rsa.PrivateKey {
	emuKeysOnce.Do(func() {
		for j := range emuKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			emuKeys[j] = k
		}
	})
	return emuKeys[i]
}

// emuClock is the clock shared by the emulator and the client.
type emuClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *emuClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *emuClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// emuEnv is an emulated identity domain with one app, one user and two
// resource servers, the first allowing refresh.
type emuEnv struct {
	t    *testing.T
	clk  *emuClock
	em   *emulator.Emulator
	srv  *httptest.Server
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

func newEmuEnv(t *testing.T) *emuEnv {
	t.Helper()
	env := &emuEnv{t: t, clk: &emuClock{t: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}, key: emuKey(0)}
	em, err := emulator.New(emulator.Options{Now: env.clk.Now, SigningKey: emuKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	env.em = em
	env.srv = httptest.NewServer(em)
	t.Cleanup(env.srv.Close)
	if err := em.SetDomainURL(env.srv.URL); err != nil {
		t.Fatal(err)
	}
	env.cert, err = emulator.NewSelfSignedCert(env.key, "tokd test", env.clk.Now(), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	em.AddUser(emuUser)
	for _, rs := range []emulator.ResourceServer{
		{Audience: emuAPI, Scopes: []string{"read"}, AllowRefresh: true},
		{Audience: emuOther, Scopes: []string{"read"}},
	} {
		if err := em.AddResourceServer(rs); err != nil {
			t.Fatal(err)
		}
	}
	err = em.AddApp(emulator.App{
		ClientID:      emuClient,
		ClientSecret:  emuSecret,
		Certs:         map[string]*x509.Certificate{emuAlias: env.cert},
		GrantTypes:    []string{emulator.GrantJWTBearer, emulator.GrantClientCredentials, emulator.GrantRefreshToken},
		AllowedScopes: []string{emuRead, emuOtherRd},
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (env *emuEnv) client(auth oauth.ClientAuth) *oauth.Client {
	return &oauth.Client{
		TokenURL:   env.srv.URL + emulator.TokenPath,
		Auth:       auth,
		HTTPClient: env.srv.Client(),
		Now:        env.clk.Now,
	}
}

func (env *emuEnv) secretClient() *oauth.Client {
	return env.client(oauth.SecretAuth{ClientID: emuClient, Secret: emuSecret})
}

// assertion is a user assertion for emuUser as tokd signs it by default.
func (env *emuEnv) assertion() *oauth.Assertion {
	return &oauth.Assertion{
		Issuer:   emuClient,
		Subject:  emuUser,
		Audience: []string{env.srv.URL + "/", emulator.OracleAudience},
		Key:      env.key,
		KeyID:    emuAlias,
	}
}

func (env *emuEnv) clientAssertion() *oauth.Assertion {
	a := env.assertion()
	a.Subject = emuClient
	return a
}

// wantOAuthError returns err as an *oauth.Error, failing unless it is one
// with the code and retryability given.
func wantOAuthError(t *testing.T, err error, code string, retryable bool) *oauth.Error {
	t.Helper()
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("got %T %v, want *oauth.Error", err, err)
	}
	if oe.Code != code || oe.Retryable != retryable {
		t.Fatalf("got code %q retryable %v (%v), want %q retryable %v", oe.Code, oe.Retryable, err, code, retryable)
	}
	return oe
}

func TestEmulatorJWTBearerSecret(t *testing.T) {
	env := newEmuEnv(t)
	tok, err := env.secretClient().JWTBearer(context.Background(), env.assertion(), []string{emuRead})
	if err != nil {
		t.Fatal(err)
	}
	now := env.clk.Now()
	if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.RefreshToken != "" ||
		!tok.IssuedAt.Equal(now) || !tok.Expiry.Equal(now.Add(time.Hour)) {
		t.Errorf("token %+v", tok)
	}
	r := env.em.Stats().Recent[0]
	if r.ClientAuth != "client_secret_basic" || r.ClientID != emuClient || r.Assertion.KeyID != emuAlias ||
		r.Assertion.X5T != "" || r.Assertion.Subject != emuUser {
		t.Errorf("request seen as %+v %+v", r, r.Assertion)
	}
}

func TestEmulatorJWTBearerClientAssertion(t *testing.T) {
	cases := []struct {
		name     string
		kid, x5t bool
	}{
		{name: "kid", kid: true},
		{name: "x5t", x5t: true},
		{name: "kid and x5t", kid: true, x5t: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEmuEnv(t)
			ca, ua := env.clientAssertion(), env.assertion()
			for _, a := range []*oauth.Assertion{ca, ua} {
				a.KeyID, a.X5T = "", ""
				if tc.kid {
					a.KeyID = emuAlias
				}
				if tc.x5t {
					a.X5T = oauth.X5T(env.cert)
				}
			}
			c := env.client(oauth.AssertionAuth{Assertion: *ca})
			tok, err := c.JWTBearer(context.Background(), ua, []string{emuRead})
			if err != nil {
				t.Fatal(err)
			}
			if !tok.Valid(env.clk.Now()) {
				t.Errorf("token %+v", tok)
			}
			r := env.em.Stats().Recent[0]
			if r.ClientAuth != "private_key_jwt" || r.ClientAssertion == nil || r.ClientAssertion.Subject != emuClient {
				t.Fatalf("request seen as %+v", r)
			}
			if tc.x5t && (r.ClientAssertion.X5T != emulator.Thumbprint(env.cert) || r.Assertion.X5T != emulator.Thumbprint(env.cert)) {
				t.Errorf("x5t %q, want %q", r.ClientAssertion.X5T, emulator.Thumbprint(env.cert))
			}
			if r.ClientAssertion.JTI == r.Assertion.JTI {
				t.Error("client and user assertions share a jti")
			}
		})
	}
}

func TestEmulatorClientCredentials(t *testing.T) {
	env := newEmuEnv(t)
	for _, auth := range []oauth.ClientAuth{
		oauth.SecretAuth{ClientID: emuClient, Secret: emuSecret},
		oauth.AssertionAuth{Assertion: *env.clientAssertion()},
	} {
		tok, err := env.client(auth).ClientCredentials(context.Background(), []string{emuRead})
		if err != nil {
			t.Fatalf("%T: %v", auth, err)
		}
		if !tok.Expiry.Equal(env.clk.Now().Add(time.Hour)) {
			t.Errorf("%T: expiry %v", auth, tok.Expiry)
		}
	}
	if s := env.em.Stats(); s.ByGrant[oauth.GrantClientCredentials] != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestEmulatorRefreshRotation(t *testing.T) {
	env := newEmuEnv(t)
	c := env.secretClient()
	ctx := context.Background()
	first, err := c.JWTBearer(ctx, env.assertion(), []string{emuRead, "offline_access"})
	if err != nil {
		t.Fatal(err)
	}
	if first.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	env.clk.Advance(50 * time.Minute)
	second, err := c.Refresh(ctx, first.RefreshToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("the refresh token was not rotated")
	}
	if !second.Expiry.Equal(env.clk.Now().Add(time.Hour)) {
		t.Errorf("expiry %v", second.Expiry)
	}
	_, err = c.Refresh(ctx, first.RefreshToken, nil)
	if oe := wantOAuthError(t, err, oauth.CodeInvalidGrant, false); oe.StatusCode != 400 {
		t.Errorf("status %d", oe.StatusCode)
	}
	if _, err := c.Refresh(ctx, second.RefreshToken, []string{emuRead}); err != nil {
		t.Fatalf("the rotated refresh token: %v", err)
	}
}

func TestEmulatorExpiry(t *testing.T) {
	env := newEmuEnv(t)
	// The client's clock runs 10 s ahead of the domain's (within its skew):
	// expiry is the client's receipt time plus expires_in, not the JWT's exp.
	received := env.clk.Now().Add(10 * time.Second)
	c := env.secretClient()
	c.Now = func() time.Time { return received }
	for _, tc := range []struct {
		scopes []string
		want   time.Duration
	}{
		{[]string{emuRead}, time.Hour},
		{[]string{emuRead, "urn:opc:resource:expiry=120"}, 2 * time.Minute},
		{[]string{emuRead, "urn:opc:resource:expiry=5"}, time.Minute},
	} {
		tok, err := c.JWTBearer(context.Background(), env.assertion(), tc.scopes)
		if err != nil {
			t.Fatal(err)
		}
		if !tok.IssuedAt.Equal(received) || !tok.Expiry.Equal(received.Add(tc.want)) {
			t.Errorf("%v: issued %v expiry %v, want %v + %v", tc.scopes, tok.IssuedAt, tok.Expiry, received, tc.want)
		}
		if exp, err := oauth.JWTExpiry(tok.AccessToken); err != nil || !exp.Equal(env.clk.Now().Add(tc.want)) {
			t.Errorf("%v: JWT exp %v (%v)", tc.scopes, exp, err)
		}
	}
}

func TestEmulatorRejections(t *testing.T) {
	cases := []struct {
		name   string
		mod    func(env *emuEnv, user, client *oauth.Assertion) oauth.ClientAuth
		code   string
		status int
	}{
		{"wrong aud", func(env *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.Audience = []string{env.srv.URL + emulator.TokenPath}
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"wrong iss", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.Issuer = "someone-else"
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"unknown kid", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.KeyID = "not-imported"
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"unknown x5t", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.X5T = "AAAAAAAAAAAAAAAAAAAAAAAAAAA"
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"signed by a stranger", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.Key = emuKey(2)
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"unknown user", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.Subject = "mallory"
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"assertion lifetime over an hour", func(_ *emuEnv, u, _ *oauth.Assertion) oauth.ClientAuth {
			u.Lifetime = 2 * time.Hour
			return nil
		}, oauth.CodeInvalidGrant, 400},
		{"client assertion unknown kid", func(_ *emuEnv, _, c *oauth.Assertion) oauth.ClientAuth {
			c.KeyID = "not-imported"
			return oauth.AssertionAuth{Assertion: *c}
		}, oauth.CodeInvalidClient, 401},
		{"client assertion wrong aud", func(_ *emuEnv, _, c *oauth.Assertion) oauth.ClientAuth {
			c.Audience = []string{"https://elsewhere.example.com/"}
			return oauth.AssertionAuth{Assertion: *c}
		}, oauth.CodeInvalidClient, 401},
		{"client assertion wrong iss", func(_ *emuEnv, _, c *oauth.Assertion) oauth.ClientAuth {
			c.Issuer = "someone-else"
			// AssertionAuth sends client_id = iss: an unknown client.
			return oauth.AssertionAuth{Assertion: *c}
		}, oauth.CodeInvalidClient, 401},
		{"wrong secret", func(_ *emuEnv, _, _ *oauth.Assertion) oauth.ClientAuth {
			return oauth.SecretAuth{ClientID: emuClient, Secret: "s3cr t/=&"}
		}, oauth.CodeInvalidClient, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEmuEnv(t)
			user, client := env.assertion(), env.clientAssertion()
			c := env.secretClient()
			if auth := tc.mod(env, user, client); auth != nil {
				c.Auth = auth
			}
			_, err := c.JWTBearer(context.Background(), user, []string{emuRead})
			oe := wantOAuthError(t, err, tc.code, false)
			if oe.StatusCode != tc.status || oe.RetryAfter != 0 {
				t.Errorf("status %d retry after %v, want %d", oe.StatusCode, oe.RetryAfter, tc.status)
			}
		})
	}
}

func TestEmulatorMultiResource(t *testing.T) {
	env := newEmuEnv(t)
	c := env.secretClient()
	_, err := c.ClientCredentials(context.Background(), []string{emuRead, emuOtherRd})
	wantOAuthError(t, err, oauth.CodeInvalidScope, false)
	if !strings.Contains(err.Error(), emuMultiRes) {
		t.Errorf("error %q does not mention %s", err, emuMultiRes)
	}
	if errors.Is(err, oauth.ErrMultiResource) {
		t.Error("an invalid_scope error is ErrMultiResource")
	}

	_, err = c.ClientCredentials(context.Background(), []string{emuRead, emuOtherRd, emuMultiRes})
	if !errors.Is(err, oauth.ErrMultiResource) {
		t.Fatalf("got %v, want ErrMultiResource", err)
	}
	oe := wantOAuthError(t, err, "", false)
	if oe.StatusCode != 200 || !strings.Contains(err.Error(), emuMultiRes) {
		t.Errorf("error %v (HTTP %d)", err, oe.StatusCode)
	}
	if s := env.em.Stats(); s.Issued != 2 {
		t.Errorf("the emulator issued %d tokens, want 2", s.Issued)
	}
}

func TestEmulatorRetryAfter(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(env *emuEnv)
		status int
		want   time.Duration
	}{
		{"seconds", func(env *emuEnv) { env.em.Inject(emulator.TooManyRequestsFault("120")) }, 429, 2 * time.Minute},
		{"HTTP date", func(env *emuEnv) {
			env.em.Inject(emulator.TooManyRequestsFault(emulator.RetryAfterDate(env.clk.Now().Add(90 * time.Second))))
		}, 429, 90 * time.Second},
		{"absent", func(env *emuEnv) { env.em.Inject(emulator.TooManyRequestsFault("")) }, 429, 0},
		{"date in the past", func(env *emuEnv) {
			env.em.Inject(emulator.TooManyRequestsFault(emulator.RetryAfterDate(env.clk.Now().Add(-time.Minute))))
		}, 429, 0},
		{"on 503", func(env *emuEnv) {
			f := emulator.ServerErrorFault(503)
			f.Header.Set("Retry-After", "30")
			env.em.Inject(f)
		}, 503, 30 * time.Second},
		{"rate limit", func(env *emuEnv) {
			env.em.SetRateLimit(emulator.RateLimit{PerSecond: 1, RetryAfter: true})
			if _, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead}); err != nil {
				env.t.Fatal(err)
			}
			env.clk.Advance(200 * time.Millisecond)
		}, 429, time.Second},
		{"rate limit without Retry-After", func(env *emuEnv) {
			env.em.SetRateLimit(emulator.DomainRateLimit(emulator.DomainFree))
			for range 10 {
				if _, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead}); err != nil {
					env.t.Fatal(err)
				}
			}
		}, 429, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEmuEnv(t)
			tc.setup(env)
			_, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead})
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("got %v, want *oauth.Error", err)
			}
			if oe.StatusCode != tc.status || !oe.Retryable || oe.RetryAfter != tc.want {
				t.Errorf("status %d retryable %v retry after %v, want %d true %v (%v)",
					oe.StatusCode, oe.Retryable, oe.RetryAfter, tc.status, tc.want, err)
			}
		})
	}
}

func TestEmulatorServerErrors(t *testing.T) {
	for _, f := range []emulator.Fault{
		emulator.ServerErrorFault(500),
		emulator.ServerErrorFault(502),
		emulator.ServerErrorFault(503),
		emulator.HTMLFault(502),
		emulator.ErrorFault(503, "", ""),
	} {
		env := newEmuEnv(t)
		env.em.Inject(f)
		_, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead})
		var oe *oauth.Error
		if !errors.As(err, &oe) || !oe.Retryable || oe.StatusCode != f.Status {
			t.Errorf("fault %d %s: got %v, want a retryable *oauth.Error", f.Status, f.Body, err)
		}
	}
}

func TestEmulatorBadBodies(t *testing.T) {
	for name, f := range map[string]emulator.Fault{
		"garbage":   emulator.GarbageFault(),
		"truncated": emulator.TruncatedJSONFault(),
		"HTML":      emulator.HTMLFault(200),
	} {
		t.Run(name, func(t *testing.T) {
			env := newEmuEnv(t)
			env.em.Inject(f)
			_, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead})
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("got %T %v, want *oauth.Error", err, err)
			}
			if !oe.Retryable || oe.StatusCode != 200 || oe.Code != "" {
				t.Errorf("retryable %v status %d code %q", oe.Retryable, oe.StatusCode, oe.Code)
			}
			msg := err.Error()
			if !strings.Contains(msg, "unreadable token response") || !strings.Contains(msg, "(HTTP 200)") {
				t.Errorf("message %q", msg)
			}
			if strings.ContainsAny(msg, "\x00\x1b\r\n") {
				t.Errorf("message %q holds control characters", msg)
			}
		})
	}
}

func TestEmulatorHangTimeout(t *testing.T) {
	env := newEmuEnv(t)
	f, release := emulator.HangFault()
	t.Cleanup(func() { close(release) })
	env.em.Inject(f)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := env.secretClient().ClientCredentials(ctx, []string{emuRead})
	oe := wantOAuthError(t, err, "", true)
	if oe.StatusCode != 0 || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("got %v (HTTP %d), want a timeout", err, oe.StatusCode)
	}
	// The hang is spent: the next request is served.
	if _, err := env.secretClient().ClientCredentials(context.Background(), []string{emuRead}); err != nil {
		t.Fatal(err)
	}
}
