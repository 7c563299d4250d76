package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/oauth"
)

// tokenEndpoint is a TLS token endpoint that answers every
// client_credentials request with a token, counts the connections it
// accepted, and reports each connection it saw closed.
type tokenEndpoint struct {
	srv     *httptest.Server
	certPEM []byte // the server's certificate, the ca_file that trusts it

	mu       sync.Mutex
	conns    int
	byClient map[string]string // client id -> remote address of its last request
	closed   chan string       // remote addresses of closed connections
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	t.Helper()
	ep := &tokenEndpoint{byClient: map[string]string{}, closed: make(chan string, 1024)}
	ep.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, _, _ := r.BasicAuth()
		ep.mu.Lock()
		ep.byClient[client] = r.RemoteAddr
		ep.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"token-for-`+client+`","token_type":"Bearer","expires_in":3600}`)
	}))
	ep.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			ep.mu.Lock()
			ep.conns++
			ep.mu.Unlock()
		case http.StateClosed:
			ep.closed <- c.RemoteAddr().String()
		}
	}
	ep.srv.StartTLS()
	t.Cleanup(ep.srv.Close)
	ep.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ep.srv.Certificate().Raw})
	return ep
}

func (ep *tokenEndpoint) connections() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.conns
}

func (ep *tokenEndpoint) addrOf(client string) string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.byClient[client]
}

// transportTestConfig parses a configuration of client_credentials
// profiles against ep: each profile name maps to its ca_file, "" for none.
func transportTestConfig(t *testing.T, ep *tokenEndpoint, caFiles map[string]string) *config.Config {
	t.Helper()
	var toml strings.Builder
	for name, ca := range caFiles {
		fmt.Fprintf(&toml, "[profiles.%s]\ntoken_url = %q\nclient_id = %q\ngrant_type = \"client_credentials\"\n"+
			"client_secret_file = \"/etc/tokd/secret\"\nscopes = [\"urn:opc:idm:__myscopes__\"]\n",
			name, ep.srv.URL+"/oauth2/v1/token", name)
		if ca != "" {
			fmt.Fprintf(&toml, "ca_file = %q\n", ca)
		}
	}
	otherPEM := selfSignedPEM(t)
	fsys := fstest.MapFS{
		"etc/tokd/secret": {Data: []byte("s3cret\n"), Mode: 0o600},
		// ca1.pem and ca1-copy.pem hold the same certificate; ca2.pem
		// trusts the endpoint too, with one more certificate.
		"etc/tokd/ca1.pem":      {Data: ep.certPEM, Mode: 0o644},
		"etc/tokd/ca1-copy.pem": {Data: ep.certPEM, Mode: 0o644},
		"etc/tokd/ca2.pem":      {Data: append(append([]byte{}, ep.certPEM...), otherPEM...), Mode: 0o644},
	}
	cfg, _, err := config.Parse([]byte(toml.String()), config.Options{FS: fsys})
	if err != nil {
		t.Fatalf("config:\n%s\n%v", toml.String(), err)
	}
	return cfg
}

// selfSignedPEM returns a new self-signed CA certificate.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "another CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestTransportsByRoots checks that requests trusting equal CA pools
// share a transport, that other pools get their own, and that a transport
// no profile uses any more is forgotten.
func TestTransportsByRoots(t *testing.T) {
	ep := newTokenEndpoint(t)
	cfg := transportTestConfig(t, ep, map[string]string{
		"a": "/etc/tokd/ca1.pem", "b": "/etc/tokd/ca1.pem", "c": "/etc/tokd/ca1-copy.pem",
		"d": "/etc/tokd/ca2.pem", "e": "", "f": "",
	})
	roots := func(name string) *x509.CertPool { return cfg.Profiles[name].Creds.RootCAs }
	trs := &transports{}
	t.Cleanup(trs.closeIdle)
	trs.next()
	tr := map[string]*http.Transport{}
	for _, name := range cfg.ProfileNames() {
		tr[name] = trs.forRoots(roots(name))
	}
	if tr["a"] != tr["b"] || tr["a"] != tr["c"] {
		t.Error("profiles whose ca_files hold the same certificates do not share a transport")
	}
	if tr["e"] != tr["f"] {
		t.Error("profiles without ca_file do not share a transport")
	}
	if tr["a"] == tr["d"] || tr["a"] == tr["e"] || tr["d"] == tr["e"] {
		t.Error("profiles trusting different roots share a transport")
	}
	if len(trs.list) != 3 {
		t.Errorf("%d transports for 3 distinct CA pools", len(trs.list))
	}

	// The next configuration trusts ca1 alone: its pool is parsed anew,
	// and equal to the old one.
	cfg2 := transportTestConfig(t, ep, map[string]string{"a": "/etc/tokd/ca1.pem"})
	trs.next()
	if got := trs.forRoots(cfg2.Profiles["a"].Creds.RootCAs); got != tr["a"] {
		t.Error("a reload trusting the same roots got a new transport")
	}
	trs.dropUnused()
	if len(trs.list) != 1 || trs.list[0].tr != tr["a"] {
		t.Errorf("after the reload %d transports are kept, want ca1's alone", len(trs.list))
	}
	trs.next()
	if trs.forRoots(roots("d")) == tr["d"] {
		t.Error("a dropped transport was handed out again")
	}
}

// TestCacheProfilesShareConnections fetches the tokens of many profiles
// at once, as tokd does at start: those trusting one CA pool share at
// most oauth.MaxConnsPerHost connections to the endpoint, rather than one
// each. After a reload that drops the only profile of another pool, that
// pool's idle connection is closed.
func TestCacheProfilesShareConnections(t *testing.T) {
	ep := newTokenEndpoint(t)
	caFiles := map[string]string{"lone": "/etc/tokd/ca2.pem"}
	const shared = 3 * oauth.MaxConnsPerHost
	for i := range shared {
		caFiles[fmt.Sprintf("p%02d", i)] = "/etc/tokd/ca1.pem"
	}
	trs := &transports{}
	t.Cleanup(trs.closeIdle)
	ps := cacheProfiles(transportTestConfig(t, ep, caFiles), nil, trs, nil, nil)
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() {
			tok, err := p.Fetcher.Fetch(t.Context(), "")
			if err == nil && tok.AccessToken != "token-for-"+p.Name {
				err = fmt.Errorf("profile %s got %q", p.Name, tok.AccessToken)
			}
			errs <- err
		}()
	}
	for range ps {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, most := ep.connections(), oauth.MaxConnsPerHost+1; n > most {
		t.Errorf("%d profiles on 2 CA pools opened %d connections, want at most %d", len(ps), n, most)
	}

	lone := ep.addrOf("lone")
	delete(caFiles, "lone")
	cacheProfiles(transportTestConfig(t, ep, caFiles), nil, trs, nil, nil)
	trs.dropUnused()
	timeout := time.After(20 * time.Second) // turns a hang into a failure
	for {
		select {
		case addr := <-ep.closed:
			if addr == lone {
				return
			}
		case <-timeout:
			t.Fatal("the connection of the dropped CA pool's transport is still open")
		}
	}
}
