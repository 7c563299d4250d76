package source_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/source"
)

// The emulator stands in for the identity domain: each test builds its
// profile the way tokd does (a TOML file and the files it names, read by
// config.Load) and checks what the emulator saw of the requests.

const apiRead = emulator.DevAPIAudience + "read"

var (
	signingKeyOnce sync.Once
	signingKey     *rsa.PrivateKey
)

// emulatorSigningKey is shared by every emulator of the package: keys
// are slow to generate under -race, and NewDev makes one for its app.
func emulatorSigningKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	signingKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		signingKey = k
	})
	return signingKey
}

// env is an emulated identity domain with its demo app, and a directory
// holding the app's secret, key and certificate as tokd's configuration
// names them.
type env struct {
	em     *emulator.Emulator
	app    *emulator.DevApp
	domain string // the emulator's URL, which is also its domain URL
	dir    string
	x5t    string // of the app's certificate
}

func newEnv(t *testing.T) *env {
	t.Helper()
	em, app, err := emulator.NewDev(emulator.Options{SigningKey: emulatorSigningKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	if err := em.SetDomainURL(srv.URL); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(app.CertPEM)
	if block == nil {
		t.Fatal("the dev app's certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{em: em, app: app, domain: srv.URL, dir: t.TempDir(), x5t: emulator.Thumbprint(cert)}
	e.writeFile(t, "client.secret", []byte(app.ClientSecret+"\n"))
	e.writeFile(t, "wrong.secret", []byte("not-"+app.ClientSecret+"\n"))
	e.writeFile(t, "key.pem", app.KeyPEM)
	e.writeFile(t, "cert.pem", app.CertPEM)
	return e
}

func (e *env) writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tokenURL is the emulator's token endpoint, as config defaults it.
func (e *env) tokenURL() string { return e.domain + emulator.TokenPath }

// load writes a configuration holding one profile, "p", whose keys are
// body, and loads it. In body, $DOMAIN, $CLIENT_ID, $ALIAS and $USER stand
// for the quoted domain URL, client ID, certificate alias and user; file
// names are relative to the configuration file.
func (e *env) load(t *testing.T, body string) *config.Profile {
	t.Helper()
	body = strings.NewReplacer(
		"$DOMAIN", strconv.Quote(e.domain),
		"$CLIENT_ID", strconv.Quote(e.app.ClientID),
		"$ALIAS", strconv.Quote(e.app.CertAlias),
		"$USER", strconv.Quote(e.app.User),
	).Replace(body)
	path := filepath.Join(e.dir, "tokd.toml")
	if err := os.WriteFile(path, []byte("[profiles.p]\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatalf("config:\n%s\n%v", body, err)
	}
	if len(warnings) > 0 {
		t.Fatalf("config warnings: %v", warnings)
	}
	return cfg.Profiles["p"]
}

// source loads a profile as load does and returns its Source.
func (e *env) source(t *testing.T, body string) *source.Source {
	t.Helper()
	return source.New(e.load(t, body))
}

// requests returns what the emulator saw since the last call, and forgets it.
func (e *env) requests() []emulator.RequestInfo {
	r := e.em.Stats().Recent
	e.em.ResetStats()
	return r
}

// seen is the part of a request the tests compare.
type seen struct {
	Grant, Auth, ClientID, Scope string
	Status                       int
	Error                        string
}

func seenOf(rs []emulator.RequestInfo) []seen {
	out := make([]seen, len(rs))
	for i, r := range rs {
		out[i] = seen{Grant: r.GrantType, Auth: r.ClientAuth, ClientID: r.ClientID, Scope: r.Scope, Status: r.Status, Error: r.Error}
	}
	return out
}

// jwtBearerSecret is a jwt-bearer profile with a client secret and a kid;
// tests append to it.
const jwtBearerSecret = `
domain_url = $DOMAIN
client_id = $CLIENT_ID
client_secret_file = "client.secret"
[profiles.p.assertion]
subject = $USER
key_file = "key.pem"
key_id = $ALIAS
`

func TestFetchJWTBearerSecret(t *testing.T) {
	cases := []struct {
		name        string
		top         string // keys before [assertion]
		wantScope   string
		wantRefresh bool
	}{
		{
			name:      "scope as configured",
			top:       `scopes = ["` + apiRead + `"]`,
			wantScope: apiRead,
		},
		{
			name:        "offline_access appended for refresh_token",
			top:         `scopes = ["` + apiRead + `"]` + "\nrefresh_token = true",
			wantScope:   apiRead + " offline_access",
			wantRefresh: true,
		},
		{
			name:        "offline_access listed once",
			top:         `scopes = ["offline_access", "` + apiRead + `"]` + "\nrefresh_token = true",
			wantScope:   "offline_access " + apiRead,
			wantRefresh: true,
		},
	}
	e := newEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := e.source(t, tc.top+jwtBearerSecret)
			if !s.CanFetch() {
				t.Error("CanFetch() = false for a jwt-bearer profile")
			}
			tok, err := s.Fetch(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || !tok.Expiry.After(tok.IssuedAt) {
				t.Errorf("token %+v", tok)
			}
			if got := tok.RefreshToken != ""; got != tc.wantRefresh {
				t.Errorf("got a refresh token: %v, want %v", got, tc.wantRefresh)
			}
			rs := e.requests()
			want := []seen{{Grant: emulator.GrantJWTBearer, Auth: "client_secret_basic", ClientID: e.app.ClientID, Scope: tc.wantScope, Status: 200}}
			if diff := cmp.Diff(want, seenOf(rs)); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
			a := rs[0].Assertion
			wantAssertion := &emulator.AssertionInfo{
				Alg:      "RS256",
				KeyID:    e.app.CertAlias,
				Issuer:   e.app.ClientID,
				Subject:  e.app.User,
				Audience: []string{e.domain + "/", emulator.OracleAudience},
			}
			got := &emulator.AssertionInfo{Alg: a.Alg, KeyID: a.KeyID, X5T: a.X5T, Issuer: a.Issuer, Subject: a.Subject, Audience: a.Audience}
			if diff := cmp.Diff(wantAssertion, got); diff != "" {
				t.Errorf("user assertion (-want +got):\n%s", diff)
			}
			if rs[0].ClientAssertion != nil {
				t.Error("a client assertion was sent beside the secret")
			}
		})
	}
}

// TestFetchAssertionLifetimeBounds fetches with the shortest and longest
// assertion lifetime config accepts: the identity domain's emulator caps
// exp - iat at 1h, and tokd documents lifetime as exp - iat.
func TestFetchAssertionLifetimeBounds(t *testing.T) {
	e := newEnv(t)
	for _, lifetime := range []string{"10s", "1h"} {
		t.Run(lifetime, func(t *testing.T) {
			s := e.source(t, `scopes = ["`+apiRead+`"]`+jwtBearerSecret+`lifetime = "`+lifetime+`"`+"\n")
			if _, err := s.Fetch(t.Context(), ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFetchRefresh(t *testing.T) {
	e := newEnv(t)
	s := e.source(t, `scopes = ["`+apiRead+`"]`+"\nrefresh_token = true"+jwtBearerSecret)
	ctx := t.Context()
	first, err := s.Fetch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if first.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	e.requests()

	second, err := s.Fetch(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessToken == "" || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Errorf("refreshed token %+v: want a new access token and a rotated refresh token", second)
	}
	want := []seen{{Grant: emulator.GrantRefreshToken, Auth: "client_secret_basic", ClientID: e.app.ClientID, Status: 200}}
	if diff := cmp.Diff(want, seenOf(e.requests())); diff != "" {
		t.Errorf("refresh requests (-want +got):\n%s", diff)
	}

	// A refresh token the server no longer knows (spent, revoked, or never
	// issued) costs one refused request, then a fresh assertion.
	third, err := s.Fetch(ctx, "made-up-refresh-token")
	if err != nil {
		t.Fatal(err)
	}
	if third.AccessToken == "" || third.RefreshToken == "" {
		t.Errorf("token after fallback %+v", third)
	}
	want = []seen{
		{Grant: emulator.GrantRefreshToken, Auth: "client_secret_basic", ClientID: e.app.ClientID, Status: 400, Error: oauth.CodeInvalidGrant},
		{Grant: emulator.GrantJWTBearer, Auth: "client_secret_basic", ClientID: e.app.ClientID, Scope: apiRead + " offline_access", Status: 200},
	}
	if diff := cmp.Diff(want, seenOf(e.requests())); diff != "" {
		t.Errorf("fallback requests (-want +got):\n%s", diff)
	}
}

// TestFetchRefreshGrantRefused checks the fallback when the server
// refuses the refresh_token grant itself (RFC 6749 §5.2: the client may
// not use it, or the server does not support it), as after an admin
// removes the Refresh token grant from the app: the refresh token is
// then useless, and the profile's own grant still works. A refusal of
// the client (invalid_client) would refuse the fallback too.
func TestFetchRefreshGrantRefused(t *testing.T) {
	cases := []struct {
		code     string
		fallback bool
	}{
		{code: oauth.CodeUnauthorizedClient, fallback: true},
		{code: oauth.CodeUnsupportedGrantType, fallback: true},
		{code: oauth.CodeInvalidClient, fallback: false},
	}
	e := newEnv(t)
	s := e.source(t, `scopes = ["`+apiRead+`"]`+"\nrefresh_token = true"+jwtBearerSecret)
	first, err := s.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			e.requests()
			e.em.Inject(emulator.ErrorFault(http.StatusBadRequest, tc.code, "refused"))
			tok, err := s.Fetch(t.Context(), first.RefreshToken)
			rs := e.requests()
			if !tc.fallback {
				var oe *oauth.Error
				if !errors.As(err, &oe) || oe.Code != tc.code || len(rs) != 1 {
					t.Errorf("got %v after %d requests, want the %s refusal of the refresh alone", err, len(rs), tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v, want a token from the jwt-bearer grant", err)
			}
			if tok.AccessToken == "" {
				t.Errorf("token %+v", tok)
			}
			if len(rs) != 2 || rs[0].GrantType != emulator.GrantRefreshToken || rs[1].GrantType != emulator.GrantJWTBearer {
				t.Errorf("requests %+v, want the refresh then the jwt-bearer grant", seenOf(rs))
			}
		})
	}
}

func TestFetchRefreshRetryableFailureDoesNotFallBack(t *testing.T) {
	e := newEnv(t)
	s := e.source(t, `scopes = ["`+apiRead+`"]`+"\nrefresh_token = true"+jwtBearerSecret)
	first, err := s.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.requests()
	e.em.Inject(emulator.ServerErrorFault(503))
	_, err = s.Fetch(t.Context(), first.RefreshToken)
	var oe *oauth.Error
	if !errors.As(err, &oe) || !oe.Retryable || oe.StatusCode != 503 {
		t.Fatalf("got %v, want a retryable *oauth.Error for HTTP 503", err)
	}
	if rs := e.requests(); len(rs) != 1 || rs[0].GrantType != emulator.GrantRefreshToken {
		t.Errorf("requests %+v, want only the refresh", seenOf(rs))
	}
}

func TestFetchClientAssertion(t *testing.T) {
	cases := []struct {
		name    string
		client  string // client authentication keys
		wantKID string
		wantX5T bool
	}{
		{name: "kid", client: "client_key_id = $ALIAS", wantKID: emulator.DevCertAlias},
		{name: "x5t", client: `client_cert_file = "cert.pem"`, wantX5T: true},
	}
	e := newEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := e.source(t, `
domain_url = $DOMAIN
client_id = $CLIENT_ID
client_key_file = "key.pem"
`+tc.client+`
scopes = ["`+apiRead+`"]
refresh_token = true
[profiles.p.assertion]
subject = $USER
key_file = "key.pem"
key_id = $ALIAS
`)
			tok, err := s.Fetch(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			rs := e.requests()
			want := []seen{{Grant: emulator.GrantJWTBearer, Auth: "private_key_jwt", ClientID: e.app.ClientID, Scope: apiRead + " offline_access", Status: 200}}
			if diff := cmp.Diff(want, seenOf(rs)); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
			ca := rs[0].ClientAssertion
			if ca == nil {
				t.Fatal("no client assertion")
			}
			wantX5T := ""
			if tc.wantX5T {
				wantX5T = e.x5t
			}
			if ca.Issuer != e.app.ClientID || ca.Subject != e.app.ClientID || ca.KeyID != tc.wantKID || ca.X5T != wantX5T {
				t.Errorf("client assertion iss %q sub %q kid %q x5t %q, want %q, %q, %q, %q",
					ca.Issuer, ca.Subject, ca.KeyID, ca.X5T, e.app.ClientID, e.app.ClientID, tc.wantKID, wantX5T)
			}
			wantAud := []string{e.domain + "/", emulator.OracleAudience, e.tokenURL()}
			if diff := cmp.Diff(wantAud, ca.Audience); diff != "" {
				t.Errorf("client assertion aud (-want +got):\n%s", diff)
			}
			if ca.JTI == "" || ca.JTI == rs[0].Assertion.JTI {
				t.Errorf("client assertion jti %q, user assertion jti %q: want two fresh ones", ca.JTI, rs[0].Assertion.JTI)
			}

			// The client assertion authenticates refreshes too.
			if _, err := s.Fetch(t.Context(), tok.RefreshToken); err != nil {
				t.Fatal(err)
			}
			want = []seen{{Grant: emulator.GrantRefreshToken, Auth: "private_key_jwt", ClientID: e.app.ClientID, Status: 200}}
			if diff := cmp.Diff(want, seenOf(e.requests())); diff != "" {
				t.Errorf("refresh requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchUserAssertionX5T(t *testing.T) {
	cases := []struct {
		name    string
		keys    string
		wantKID string
	}{
		{name: "cert_file", keys: `cert_file = "cert.pem"`},
		{name: "cert_file and key_id", keys: `cert_file = "cert.pem"` + "\nkey_id = $ALIAS", wantKID: emulator.DevCertAlias},
	}
	e := newEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := e.source(t, `
domain_url = $DOMAIN
client_id = $CLIENT_ID
client_secret_file = "client.secret"
scopes = ["`+apiRead+`"]
[profiles.p.assertion]
subject = $USER
key_file = "key.pem"
`+tc.keys+"\n")
			if _, err := s.Fetch(t.Context(), ""); err != nil {
				t.Fatal(err)
			}
			rs := e.requests()
			if len(rs) != 1 || rs[0].Assertion == nil {
				t.Fatalf("requests %+v", seenOf(rs))
			}
			if a := rs[0].Assertion; a.X5T != e.x5t || a.KeyID != tc.wantKID {
				t.Errorf("user assertion x5t %q kid %q, want %q and %q", a.X5T, a.KeyID, e.x5t, tc.wantKID)
			}
		})
	}
}

func TestFetchClientCredentials(t *testing.T) {
	cases := []struct {
		name     string
		auth     string
		wantAuth string
	}{
		{name: "secret", auth: `client_secret_file = "client.secret"`, wantAuth: "client_secret_basic"},
		{name: "client assertion", auth: `client_key_file = "key.pem"` + "\nclient_key_id = $ALIAS", wantAuth: "private_key_jwt"},
	}
	e := newEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := e.source(t, `
domain_url = $DOMAIN
client_id = $CLIENT_ID
grant_type = "client_credentials"
scopes = ["`+apiRead+`"]
`+tc.auth+"\n")
			if !s.CanFetch() {
				t.Error("CanFetch() = false for a client_credentials profile")
			}
			tok, err := s.Fetch(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.RefreshToken != "" {
				t.Errorf("token %+v", tok)
			}
			rs := e.requests()
			want := []seen{{Grant: emulator.GrantClientCredentials, Auth: tc.wantAuth, ClientID: e.app.ClientID, Scope: apiRead, Status: 200}}
			if diff := cmp.Diff(want, seenOf(rs)); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
			if rs[0].Assertion != nil {
				t.Error("a user assertion was sent with client_credentials")
			}
		})
	}
}

func TestFetchImport(t *testing.T) {
	e := newEnv(t)
	// A refresh token the domain issued to the app, as an imported token
	// file would carry it.
	issuer := e.source(t, `scopes = ["`+apiRead+`"]`+"\nrefresh_token = true"+jwtBearerSecret)
	issued, err := issuer.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("without client authentication", func(t *testing.T) {
		s := e.source(t, `grant_type = "import"`+"\n")
		if s.CanFetch() {
			t.Error("CanFetch() = true for an import profile")
		}
		_, err := s.Fetch(t.Context(), "")
		if !errors.Is(err, source.ErrImportOnly) {
			t.Errorf("Fetch without a refresh token: got %v, want ErrImportOnly", err)
		}
		_, err = s.Fetch(t.Context(), issued.RefreshToken)
		if !errors.Is(err, source.ErrImportOnly) {
			t.Fatalf("Fetch with a refresh token: got %v, want ErrImportOnly", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "refresh token") || !strings.Contains(msg, "client_secret_file") {
			t.Errorf("error %q does not say why the refresh token cannot be used", msg)
		}
	})

	t.Run("with a client secret", func(t *testing.T) {
		s := e.source(t, `
grant_type = "import"
domain_url = $DOMAIN
client_id = $CLIENT_ID
client_secret_file = "client.secret"
refresh_token = true
`)
		if s.CanFetch() {
			t.Error("CanFetch() = true for an import profile")
		}
		e.requests()
		if _, err := s.Fetch(t.Context(), ""); !errors.Is(err, source.ErrImportOnly) {
			t.Errorf("Fetch without a refresh token: got %v, want ErrImportOnly", err)
		}
		if rs := e.requests(); len(rs) != 0 {
			t.Errorf("Fetch without a refresh token sent %+v", seenOf(rs))
		}

		tok, err := s.Fetch(t.Context(), issued.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken == "" || tok.RefreshToken == "" || tok.RefreshToken == issued.RefreshToken {
			t.Errorf("refreshed token %+v", tok)
		}
		want := []seen{{Grant: emulator.GrantRefreshToken, Auth: "client_secret_basic", ClientID: e.app.ClientID, Status: 200}}
		if diff := cmp.Diff(want, seenOf(e.requests())); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}

		// With no grant to fall back on, the server's refusal is the answer.
		_, err = s.Fetch(t.Context(), "made-up-refresh-token")
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Code != oauth.CodeInvalidGrant || errors.Is(err, source.ErrImportOnly) {
			t.Errorf("Fetch with a rejected refresh token: got %v, want the invalid_grant *oauth.Error", err)
		}
		if rs := e.requests(); len(rs) != 1 {
			t.Errorf("requests %+v, want the refresh alone", seenOf(rs))
		}
	})
}

func TestFetchPermanentRejection(t *testing.T) {
	cases := []struct {
		name       string
		profile    string
		wantCode   string
		wantStatus int
	}{
		{
			name:       "unknown user",
			profile:    strings.Replace(jwtBearerSecret, "subject = $USER", `subject = "mallory@example.com"`, 1),
			wantCode:   oauth.CodeInvalidGrant,
			wantStatus: 400,
		},
		{
			name:       "certificate alias not imported",
			profile:    strings.Replace(jwtBearerSecret, "key_id = $ALIAS", `key_id = "not-imported"`, 1),
			wantCode:   oauth.CodeInvalidGrant,
			wantStatus: 400,
		},
		{
			name:       "wrong secret",
			profile:    strings.Replace(jwtBearerSecret, "client.secret", "wrong.secret", 1),
			wantCode:   oauth.CodeInvalidClient,
			wantStatus: 401,
		},
	}
	e := newEnv(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.profile == jwtBearerSecret {
				t.Fatal("the case changes nothing")
			}
			_, err := e.source(t, `scopes = ["`+apiRead+`"]`+tc.profile).Fetch(t.Context(), "")
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("got %T %v, want *oauth.Error", err, err)
			}
			if oe.Code != tc.wantCode || oe.StatusCode != tc.wantStatus || oe.Retryable {
				t.Errorf("got code %q HTTP %d retryable %v (%v), want %q HTTP %d, not retryable",
					oe.Code, oe.StatusCode, oe.Retryable, err, tc.wantCode, tc.wantStatus)
			}
		})
	}
}

// gate is a transport shared by profiles: it counts the requests it
// carries, tells arrived of each, and holds each until release is closed
// or the request's context ends.
type gate struct {
	next     http.RoundTripper
	arrived  chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	requests int
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	g.requests++
	g.mu.Unlock()
	g.arrived <- struct{}{}
	select {
	case <-g.release:
		return g.next.RoundTrip(req)
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
}

// TestSharedTransportKeepsProfileTimeouts sends two profiles' requests
// through one transport: each profile's timeout still bounds its own
// requests only.
func TestSharedTransportKeepsProfileTimeouts(t *testing.T) {
	e := newEnv(t)
	tr := oauth.NewTransport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	g := &gate{next: tr, arrived: make(chan struct{}, 2), release: make(chan struct{})}
	body := `scopes = ["` + apiRead + `"]` + jwtBearerSecret
	patientProfile, hastyProfile := e.load(t, body), e.load(t, body)
	hastyProfile.Timeout.Duration = 50 * time.Millisecond // below config's minimum, to keep the test short
	patient, hasty := source.NewWithTransport(patientProfile, g), source.NewWithTransport(hastyProfile, g)

	patientErr := make(chan error, 1)
	go func() {
		_, err := patient.Fetch(t.Context(), "")
		patientErr <- err
	}()
	<-g.arrived
	_, err := hasty.Fetch(t.Context(), "")
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Description != "timeout" {
		t.Errorf("profile with a 50 ms timeout: err = %v, want a timeout", err)
	}
	close(g.release)
	if err := <-patientErr; err != nil {
		t.Errorf("profile with the default timeout, held longer than the other's: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.requests != 2 {
		t.Errorf("the shared transport carried %d requests, want 2", g.requests)
	}
}
