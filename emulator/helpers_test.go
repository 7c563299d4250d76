package emulator_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/emulator"
)

// Keys are slow to generate under -race: the tests share a few.
var (
	keysOnce sync.Once
	keys     [4]*rsa.PrivateKey
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for j := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[j] = k
		}
	})
	return keys[i]
}

// fakeClock is an injected clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	clientID  = "app1"
	secret    = "s3cr+t/=&x y%"
	alias     = "app1-key"
	alias2    = "second"
	client2   = "app2"
	secret2   = "secret-two"
	client3   = "app3"
	secret3   = "secret-three"
	user      = "alice"
	apiAud    = "https://api.example.com/"
	otherAud  = "https://other.example.com/"
	shortAud  = "https://short.example.com/"
	roleScope = "urn:opc:idm:role.User Administrator"
)

// harness is an emulator on an httptest server, with three apps, a user
// and three resource servers.
type harness struct {
	t           *testing.T
	clk         *fakeClock
	em          *emulator.Emulator
	srv         *httptest.Server
	key         *rsa.PrivateKey // app1's key, imported under alias
	cert        *x509.Certificate
	cert2       *x509.Certificate // app1's second certificate, key 1, alias2
	foreignKey  *rsa.PrivateKey   // imported nowhere
	foreignCert *x509.Certificate
}

func newHarness(t *testing.T, opts ...func(*emulator.Options)) *harness {
	t.Helper()
	h := &harness{t: t, clk: newClock(), key: testKey(t, 0), foreignKey: testKey(t, 2)}
	o := emulator.Options{Now: h.clk.Now, SigningKey: testKey(t, 3)}
	for _, f := range opts {
		f(&o)
	}
	em, err := emulator.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.em = em
	h.srv = httptest.NewServer(em)
	t.Cleanup(h.srv.Close)
	if o.DomainURL == "" {
		if err := em.SetDomainURL(h.srv.URL); err != nil {
			t.Fatal(err)
		}
	}
	year := 365 * 24 * time.Hour
	h.cert = mustCert(t, h.key, h.clk.Now(), year)
	h.cert2 = mustCert(t, testKey(t, 1), h.clk.Now(), year)
	h.foreignCert = mustCert(t, h.foreignKey, h.clk.Now(), year)

	em.AddUser(user)
	for _, rs := range []emulator.ResourceServer{
		{Audience: apiAud, Scopes: []string{"read", "write"}, AllowRefresh: true},
		{Audience: otherAud, Scopes: []string{"read"}},
		{Audience: shortAud, Scopes: []string{"s"}, AllowRefresh: true, AccessTokenLifetime: 10 * time.Minute},
	} {
		if err := em.AddResourceServer(rs); err != nil {
			t.Fatal(err)
		}
	}
	all := []string{emulator.GrantJWTBearer, emulator.GrantClientCredentials, emulator.GrantRefreshToken}
	for _, a := range []emulator.App{
		{
			ClientID: clientID, ClientSecret: secret, GrantTypes: all,
			Certs: map[string]*x509.Certificate{alias: h.cert, alias2: h.cert2},
			AllowedScopes: []string{apiAud + "read", apiAud + "write", otherAud + "read", shortAud + "s",
				roleScope, emulator.ScopeConsumerAll},
		},
		{
			ClientID: client2, ClientSecret: secret2, AccessTokenLifetime: 5 * time.Minute,
			GrantTypes:    []string{emulator.GrantClientCredentials, emulator.GrantRefreshToken},
			AllowedScopes: []string{apiAud + "read"},
		},
		{
			ClientID: client3, ClientSecret: secret3,
			Certs:         map[string]*x509.Certificate{alias: h.foreignCert},
			GrantTypes:    []string{emulator.GrantClientCredentials},
			AllowedScopes: []string{apiAud + "read"},
		},
	} {
		if err := em.AddApp(a); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func mustCert(t testing.TB, key *rsa.PrivateKey, now time.Time, validity time.Duration) *x509.Certificate {
	t.Helper()
	cert, err := emulator.NewSelfSignedCert(key, "test", now, validity)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (h *harness) tokenURL() string { return h.srv.URL + emulator.TokenPath }

// jwtSpec is an assertion to sign; mods change it before signing.
type jwtSpec struct {
	header map[string]any
	claims jwt.MapClaims
	method jwt.SigningMethod
	key    any
}

type jwtMod func(*jwtSpec)

func (h *harness) signJWT(sub string, mods []jwtMod) string {
	h.t.Helper()
	now := h.clk.Now()
	s := &jwtSpec{
		header: map[string]any{"kid": alias},
		claims: jwt.MapClaims{
			"iss": clientID,
			"sub": sub,
			"aud": []string{h.srv.URL + "/", emulator.OracleAudience},
			"iat": now.Unix(),
			"exp": now.Add(5 * time.Minute).Unix(),
			"jti": rand.Text(),
		},
		method: jwt.SigningMethodRS256,
		key:    h.key,
	}
	for _, m := range mods {
		m(s)
	}
	tok := jwt.NewWithClaims(s.method, s.claims)
	for k, v := range s.header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	signed, err := tok.SignedString(s.key)
	if err != nil {
		h.t.Fatal(err)
	}
	return signed
}

// userJWT is a user assertion for alice; clientJWT a client assertion of app1.
func (h *harness) userJWT(mods ...jwtMod) string   { return h.signJWT(user, mods) }
func (h *harness) clientJWT(mods ...jwtMod) string { return h.signJWT(clientID, mods) }

func hdr(k string, v any) jwtMod        { return func(s *jwtSpec) { s.header[k] = v } }
func claim(k string, v any) jwtMod      { return func(s *jwtSpec) { s.claims[k] = v } }
func noClaim(k string) jwtMod           { return func(s *jwtSpec) { delete(s.claims, k) } }
func signedBy(key any) jwtMod           { return func(s *jwtSpec) { s.key = key } }
func method(m jwt.SigningMethod) jwtMod { return func(s *jwtSpec) { s.method = m } }

// reqOpt changes a token request before it is sent.
type reqOpt func(*http.Request)

// basic authenticates as RFC 6749 §2.3.1 says: URL-encode, then base64.
func basic(id, secret string) reqOpt {
	return rawBasic(url.QueryEscape(id), url.QueryEscape(secret))
}

// rawBasic sends id and secret without URL-encoding them.
func rawBasic(id, secret string) reqOpt {
	return func(r *http.Request) {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(id+":"+secret)))
	}
}

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

var app1 = basic(clientID, secret)

type response struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

func (r *response) str(k string) string {
	s, _ := r.json[k].(string)
	return s
}

func (h *harness) post(form url.Values, opts ...reqOpt) *response {
	h.t.Helper()
	return h.postBody(form.Encode(), opts...)
}

func (h *harness) postBody(body string, opts ...reqOpt) *response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.tokenURL(), strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	for _, o := range opts {
		o(req)
	}
	return h.send(req)
}

func (h *harness) send(req *http.Request) *response {
	h.t.Helper()
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.json)
	return r
}

func jwtBearer(assertion, scope string) url.Values {
	f := url.Values{"grant_type": {emulator.GrantJWTBearer}, "assertion": {assertion}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

func clientCredentials(scope string) url.Values {
	f := url.Values{"grant_type": {emulator.GrantClientCredentials}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

func refresh(rt, scope string) url.Values {
	f := url.Values{"grant_type": {emulator.GrantRefreshToken}, "refresh_token": {rt}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

// withClientAssertion adds a client assertion to form.
func withClientAssertion(form url.Values, assertion string) url.Values {
	form.Set("client_id", clientID)
	form.Set("client_assertion_type", emulator.ClientAssertionType)
	form.Set("client_assertion", assertion)
	return form
}

// accessClaims verifies an access token with the emulator's key and
// returns its claims.
func (h *harness) accessClaims(token string) jwt.MapClaims {
	h.t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(h.clk.Now)).
		ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return h.em.PublicKey(), nil })
	if err != nil {
		h.t.Fatalf("access token does not verify: %v", err)
	}
	return claims
}

// tokenOK fails unless r is a successful single token response.
func (h *harness) tokenOK(r *response) {
	h.t.Helper()
	if r.status != http.StatusOK || r.str("access_token") == "" {
		h.t.Fatalf("got %d %s, want a token", r.status, r.raw)
	}
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
