package emulator_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/emulator"
)

func TestFaults(t *testing.T) {
	clkDate := newClock().Now().Add(90 * time.Second)
	cases := []struct {
		name       string
		fault      emulator.Fault
		status     int
		retryAfter string
		json       bool   // the body is JSON
		code       string // its error
		contains   string
	}{
		{name: "error", fault: emulator.ErrorFault(400, "invalid_grant", "nope"), status: 400, json: true, code: "invalid_grant"},
		{name: "429 without Retry-After", fault: emulator.TooManyRequestsFault(""), status: 429, json: true, code: "temporarily_unavailable"},
		{name: "429 with Retry-After seconds", fault: emulator.TooManyRequestsFault("7"), status: 429, retryAfter: "7", json: true, code: "temporarily_unavailable"},
		{name: "429 with Retry-After date", fault: emulator.TooManyRequestsFault(emulator.RetryAfterDate(clkDate)),
			status: 429, retryAfter: "Wed, 02 Jan 2030 03:05:35 GMT", json: true, code: "temporarily_unavailable"},
		{name: "500", fault: emulator.ServerErrorFault(500), status: 500, json: true, code: "server_error"},
		{name: "502", fault: emulator.ServerErrorFault(502), status: 502, json: true, code: "temporarily_unavailable"},
		{name: "503", fault: emulator.ServerErrorFault(503), status: 503, json: true, code: "temporarily_unavailable"},
		{name: "garbage 200", fault: emulator.GarbageFault(), status: 200, contains: "garbage"},
		{name: "truncated JSON 200", fault: emulator.TruncatedJSONFault(), status: 200, contains: `{"access_token":"`},
		{name: "HTML 200", fault: emulator.HTMLFault(200), status: 200, contains: "<html>"},
		{name: "HTML 502", fault: emulator.HTMLFault(502), status: 502, contains: "<html>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.em.Inject(tc.fault)
			r := h.post(clientCredentials(read), app1)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if got := r.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if isJSON := json.Valid(r.raw); isJSON != tc.json {
				t.Errorf("body is JSON: %v, want %v: %q", isJSON, tc.json, r.raw)
			}
			if r.str("error") != tc.code {
				t.Errorf("error %q, want %q", r.str("error"), tc.code)
			}
			if !bytes.Contains(r.raw, []byte(tc.contains)) {
				t.Errorf("body %q does not contain %q", r.raw, tc.contains)
			}
			// The fault is consumed: the next request is served.
			h.tokenOK(h.post(clientCredentials(read), app1))
			if s := h.em.Stats(); s.Faulted != 1 || s.TokenRequests != 2 || s.Issued != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestFaultQueueOrder(t *testing.T) {
	h := newHarness(t)
	h.em.Inject(emulator.ServerErrorFault(503), emulator.Fault{}, emulator.TooManyRequestsFault("1"))
	for i, want := range []int{503, 200, 429, 200} {
		if r := h.post(clientCredentials(read), app1); r.status != want {
			t.Fatalf("request %d: status %d, want %d", i, r.status, want)
		}
	}
	h.em.Inject(emulator.ServerErrorFault(500), emulator.ServerErrorFault(500))
	h.em.ClearFaults()
	h.tokenOK(h.post(clientCredentials(read), app1))
}

func TestOutage(t *testing.T) {
	h := newHarness(t)
	h.em.Inject(emulator.ErrorFault(400, "invalid_grant", "queued"))
	h.em.SetOutage(emulator.ServerErrorFault(503))
	for i := range 3 {
		if r := h.post(clientCredentials(read), app1); r.status != 503 {
			t.Fatalf("request %d during the outage: %d", i, r.status)
		}
	}
	h.em.ClearFaults()
	h.tokenOK(h.post(clientCredentials(read), app1))
	h.em.SetOutage(emulator.HTMLFault(502))
	if r := h.post(clientCredentials(read), app1); r.status != 502 {
		t.Fatalf("second outage: %d", r.status)
	}
	h.em.ClearFaults()
	h.tokenOK(h.post(clientCredentials(read), app1))
	if s := h.em.Stats(); s.Faulted != 4 {
		t.Errorf("faulted %d, want 4", s.Faulted)
	}
}

func TestHangFault(t *testing.T) {
	t.Run("released", func(t *testing.T) {
		h := newHarness(t)
		f, release := emulator.HangFault()
		taken := make(chan struct{}, 1)
		f.Taken = taken
		h.em.Inject(f)
		done := make(chan *response, 1)
		go func() { done <- h.post(clientCredentials(read), app1) }()
		<-taken
		select {
		case r := <-done:
			t.Fatalf("answered while hanging: %d", r.status)
		default:
		}
		h.clk.Advance(time.Minute) // the request is served at the time it is released
		close(release)
		r := <-done
		h.tokenOK(r)
		if c := h.accessClaims(r.str("access_token")); c["iat"] != float64(h.clk.Now().Unix()) {
			t.Errorf("iat %v, want the release time", c["iat"])
		}
	})
	t.Run("client gives up", func(t *testing.T) {
		h := newHarness(t)
		f, release := emulator.HangFault()
		t.Cleanup(func() { close(release) })
		taken := make(chan struct{}, 1)
		f.Taken = taken
		h.em.Inject(f)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.tokenURL(), strings.NewReader(clientCredentials(read).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			app1(req)
			resp, err := h.srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		<-taken
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		// The hang is spent: the next request is served.
		h.tokenOK(h.post(clientCredentials(read), app1))
	})
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, func(o *emulator.Options) {
		o.RateLimit = emulator.RateLimit{PerSecond: 2, PerMinute: 3, RetryAfter: true}
	})
	req := func() *response { return h.post(clientCredentials(read), app1) }
	h.tokenOK(req())
	h.clk.Advance(500 * time.Millisecond)
	h.tokenOK(req())
	r := req()
	if r.status != 429 || r.str("error") != "temporarily_unavailable" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("third request in a second: %d %q Retry-After %q", r.status, r.str("error"), r.header.Get("Retry-After"))
	}
	h.clk.Advance(500 * time.Millisecond) // the first request leaves the one-second window
	h.tokenOK(req())
	h.clk.Advance(2 * time.Second)
	r = req()
	if r.status != 429 || r.header.Get("Retry-After") != "57" {
		t.Fatalf("fourth request in a minute: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	h.clk.Advance(57 * time.Second)
	h.tokenOK(req())
	if s := h.em.Stats(); s.RateLimited != 2 {
		t.Errorf("rate limited %d, want 2", s.RateLimited)
	}

	// Without RetryAfter the 429 carries no header; faults bypass the limit.
	h.em.SetRateLimit(emulator.RateLimit{PerSecond: 1})
	h.tokenOK(req())
	if r := req(); r.status != 429 || r.header.Get("Retry-After") != "" {
		t.Fatalf("got %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	h.em.Inject(emulator.ErrorFault(400, "invalid_grant", "x"))
	if r := req(); r.status != 400 {
		t.Fatalf("fault under the rate limit: %d", r.status)
	}
	h.em.SetRateLimit(emulator.RateLimit{})
	h.tokenOK(req())
	h.tokenOK(req())
}

func TestDomainRateLimit(t *testing.T) {
	for _, tc := range []struct {
		typ       emulator.DomainType
		sec, mins int
	}{
		{emulator.DomainFree, 10, 150},
		{emulator.DomainOracleApps, 40, 1000},
		{emulator.DomainPremium, 65, 3400},
	} {
		if l := emulator.DomainRateLimit(tc.typ); l.PerSecond != tc.sec || l.PerMinute != tc.mins {
			t.Errorf("%d: %+v", tc.typ, l)
		}
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	h := newHarness(t)
	get := func(path string) *response {
		req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
		return h.send(req)
	}
	d := get(emulator.DiscoveryPath)
	if d.status != 200 || d.str("issuer") != emulator.OracleAudience ||
		d.str("token_endpoint") != h.tokenURL() || d.str("jwks_uri") != h.srv.URL+emulator.JWKSPath {
		t.Fatalf("discovery %d %s", d.status, d.raw)
	}
	j := get(emulator.JWKSPath)
	var set struct {
		Keys []struct {
			Kty, Kid, Use, Alg, N, E, X5T string
			X5C                           []string
		}
	}
	if err := json.Unmarshal(j.raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", j.raw, err)
	}
	k := set.Keys[0]
	if k.Kty != "RSA" || k.Kid != emulator.SigningKeyID || k.Use != "sig" || k.Alg != "RS256" {
		t.Errorf("JWK %+v", k)
	}
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	e, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil {
		t.Fatalf("n, e not base64url: %v %v", err1, err2)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if !pub.Equal(h.em.PublicKey()) {
		t.Fatal("JWK does not hold the signing key")
	}
	der, err := base64.StdEncoding.DecodeString(k.X5C[0])
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || !pub.Equal(cert.PublicKey) {
		t.Fatalf("x5c: %v", err)
	}
	if sum := sha1.Sum(der); base64.RawURLEncoding.EncodeToString(sum[:]) != k.X5T {
		t.Error("x5t is not the thumbprint of x5c")
	}

	// An access token verifies with the published key, found by kid.
	r := h.post(clientCredentials(read), app1)
	h.tokenOK(r)
	tok, err := jwt.Parse(r.str("access_token"), func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != k.Kid {
			return nil, errors.New("kid mismatch")
		}
		return pub, nil
	}, jwt.WithTimeFunc(h.clk.Now), jwt.WithIssuer(d.str("issuer")), jwt.WithAudience(apiAud))
	if err != nil || !tok.Valid {
		t.Fatalf("access token against the JWKS: %v", err)
	}
}

func TestDefaultDomainURL(t *testing.T) {
	// Without SetDomainURL, the domain is the URL the request came to.
	h := newHarness(t, func(o *emulator.Options) { o.DomainURL = "" })
	if err := h.em.SetDomainURL(""); err != nil {
		t.Fatal(err)
	}
	h.tokenOK(h.post(jwtBearer(h.userJWT(claim("aud", h.srv.URL)), read), app1))

	// A configured domain URL replaces it.
	if err := h.em.SetDomainURL("https://idcs-test.identity.oraclecloud.com/"); err != nil {
		t.Fatal(err)
	}
	if r := h.post(jwtBearer(h.userJWT(claim("aud", h.srv.URL)), read), app1); r.str("error") != "invalid_grant" {
		t.Fatalf("old domain accepted: %d %s", r.status, r.raw)
	}
	h.tokenOK(h.post(jwtBearer(h.userJWT(claim("aud", "https://idcs-test.identity.oraclecloud.com")), read), app1))
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+emulator.DiscoveryPath, nil)
	if d := h.send(req); d.str("token_endpoint") != "https://idcs-test.identity.oraclecloud.com/oauth2/v1/token" {
		t.Errorf("token_endpoint %q", d.str("token_endpoint"))
	}
}

func TestConfigErrors(t *testing.T) {
	em, err := emulator.New(emulator.Options{SigningKey: testKey(t, 3)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ftp://x", "https://", "https://x/path", "https://x?q=1", "https://u:p@x", "::"} {
		if err := em.SetDomainURL(u); err == nil {
			t.Errorf("SetDomainURL(%q) accepted", u)
		}
	}
	if _, err := emulator.New(emulator.Options{DomainURL: "nope"}); err == nil {
		t.Error("New accepted a bad domain URL")
	}
	ecCert := &x509.Certificate{PublicKey: "not RSA"}
	for name, a := range map[string]emulator.App{
		"no client ID":   {},
		"nil cert":       {ClientID: "a", Certs: map[string]*x509.Certificate{"x": nil}},
		"non-RSA cert":   {ClientID: "a", Certs: map[string]*x509.Certificate{"x": ecCert}},
		"unknown grant":  {ClientID: "a", GrantTypes: []string{"password"}},
		"implicit grant": {ClientID: "a", GrantTypes: []string{"implicit"}},
	} {
		if err := em.AddApp(a); err == nil {
			t.Errorf("AddApp %s: accepted", name)
		}
	}
	for name, rs := range map[string]emulator.ResourceServer{
		"no audience":       {Scopes: []string{"a"}},
		"no scopes":         {Audience: "https://a/"},
		"reserved audience": {Audience: "urn:opc:idm:", Scopes: []string{"a"}},
	} {
		if err := em.AddResourceServer(rs); err == nil {
			t.Errorf("AddResourceServer %s: accepted", name)
		}
	}
}

func TestStatsKeepNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	h := newHarness(t, func(o *emulator.Options) {
		o.History = 3
		o.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	})
	userA := h.userJWT(hdr("kid", nil), hdr("x5t", emulator.Thumbprint(h.cert)), claim("jti", "jti-1"))
	r1 := h.post(jwtBearer(userA, read+" offline_access"), app1)
	h.tokenOK(r1)
	clientA := h.clientJWT(claim("jti", "jti-2"))
	r2 := h.post(withClientAssertion(refresh(r1.str("refresh_token"), ""), clientA))
	h.tokenOK(r2)
	h.post(url.Values{"grant_type": {"password"}, "password": {"hunter2"}}, app1)
	h.post(clientCredentials(read), app1)

	s := h.em.Stats()
	if s.TokenRequests != 4 || s.Issued != 3 || len(s.Recent) != 3 {
		t.Fatalf("stats %+v", s)
	}
	wantGrants := map[string]int{emulator.GrantJWTBearer: 1, emulator.GrantRefreshToken: 1, "other": 1, emulator.GrantClientCredentials: 1}
	for g, n := range wantGrants {
		if s.ByGrant[g] != n {
			t.Errorf("ByGrant[%q] = %d, want %d", g, s.ByGrant[g], n)
		}
	}
	// The oldest request fell out of the history of 3.
	ref := s.Recent[0]
	if ref.GrantType != emulator.GrantRefreshToken || ref.ClientID != clientID || ref.ClientAuth != "private_key_jwt" ||
		ref.Status != 200 || ref.ClientAssertion == nil || ref.ClientAssertion.KeyID != alias ||
		ref.ClientAssertion.JTI != "jti-2" || ref.ClientAssertion.Subject != clientID || ref.Assertion != nil {
		t.Errorf("refresh request %+v %+v", ref, ref.ClientAssertion)
	}
	if bad := s.Recent[1]; bad.Error != "unsupported_grant_type" || bad.Status != 400 || bad.ClientAuth != "client_secret_basic" {
		t.Errorf("bad grant request %+v", bad)
	}
	if cc := s.Recent[2]; cc.Scope != read || cc.ClientID != clientID || !cc.Time.Equal(h.clk.Now()) {
		t.Errorf("client_credentials request %+v", cc)
	}

	h.em.ResetStats()
	h.post(jwtBearer(h.userJWT(claim("jti", "jti-3"), hdr("x5t", "thumb")), read), app1)
	u := h.em.Stats().Recent[0]
	if u.Assertion == nil || u.Assertion.X5T != "thumb" || u.Assertion.KeyID != alias || u.Assertion.Subject != user ||
		u.Assertion.JTI != "jti-3" || u.Assertion.Alg != "RS256" || len(u.Assertion.Audience) != 2 ||
		!u.Assertion.ExpiresAt.Equal(h.clk.Now().Add(5*time.Minute)) || u.Error != "invalid_grant" {
		t.Errorf("user assertion %+v %+v", u, u.Assertion)
	}

	dump, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	logged := logs.String()
	logMu.Unlock()
	for name, secretText := range map[string]string{
		"client secret": secret, "password": "hunter2", "user assertion": userA, "client assertion": clientA,
		"access token": r1.str("access_token"), "refresh token": r1.str("refresh_token"),
		"rotated refresh token": r2.str("refresh_token"),
	} {
		if strings.Contains(string(dump), secretText) {
			t.Errorf("Stats hold the %s", name)
		}
		if strings.Contains(logged, secretText) {
			t.Errorf("the log holds the %s", name)
		}
	}
	if !strings.Contains(logged, "client_id=app1") {
		t.Errorf("log %q", logged)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestConcurrentRefresh(t *testing.T) {
	h := newHarness(t)
	r := h.post(clientCredentials(read+" offline_access"), app1)
	rt := r.str("refresh_token")
	const n = 8
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { statuses <- h.post(refresh(rt, ""), app1).status })
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		switch s {
		case 200:
			ok++
		case 400:
		default:
			t.Errorf("status %d", s)
		}
	}
	if ok != 1 {
		t.Fatalf("%d refreshes with one token succeeded, want 1", ok)
	}
}

func TestConcurrentRequests(t *testing.T) {
	h := newHarness(t)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var r *response
			if i%2 == 0 {
				r = h.post(jwtBearer(h.userJWT(), read), app1)
			} else {
				r = h.post(clientCredentials(read), app1)
			}
			if r.status != 200 {
				t.Errorf("request %d: %d %s", i, r.status, r.raw)
			}
			_ = h.em.Stats()
		})
	}
	wg.Wait()
	if s := h.em.Stats(); s.TokenRequests != n || s.Issued != n {
		t.Errorf("stats %+v", s)
	}
}

func TestNewDev(t *testing.T) {
	clk := newClock()
	em, dev, err := emulator.NewDev(emulator.Options{Now: clk.Now, SigningKey: testKey(t, 3)})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clk: clk, em: em}
	h.srv = newServer(t, em)
	block, _ := pem.Decode(dev.KeyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM %q", dev.KeyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(dev.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !k.(*rsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
		t.Fatalf("certificate does not match the key: %v", err)
	}
	if dev.User != emulator.DevUser || dev.CertAlias != emulator.DevCertAlias || len(dev.ClientID) != 32 || dev.ClientSecret == "" {
		t.Errorf("dev app %+v", dev)
	}
	a := h.signJWT(dev.User, []jwtMod{
		signedBy(k), hdr("kid", dev.CertAlias), claim("iss", dev.ClientID), claim("aud", h.srv.URL+"/"),
	})
	r := h.post(jwtBearer(a, emulator.DevAPIAudience+"read offline_access"), basic(dev.ClientID, dev.ClientSecret))
	h.tokenOK(r)
	if r.str("refresh_token") == "" {
		t.Error("no refresh token")
	}
	h.tokenOK(h.post(clientCredentials(emulator.ScopeMyScopes), basic(dev.ClientID, dev.ClientSecret)))
	// The dev client also authenticates with a client assertion.
	ca := h.signJWT(dev.ClientID, []jwtMod{signedBy(k), hdr("kid", nil), hdr("x5t", emulator.Thumbprint(cert)),
		claim("iss", dev.ClientID), claim("aud", emulator.OracleAudience)})
	f := clientCredentials(emulator.DevOtherAudience + "read")
	f.Set("client_assertion_type", emulator.ClientAssertionType)
	f.Set("client_assertion", ca)
	h.tokenOK(h.post(f))
}
