// Package faults_test holds tokd's fault tests: the identity domain failing
// in every way the faults issue lists, kill -9 during refresh churn, a
// state directory that fills up or turns read-only, clock steps, and abuse
// of the socket. Each runs daemon.Run in-process (or, for kill -9, in a
// re-executed test binary) against the emulator and drives it through
// tokctl's client.
//
// # Time
//
// The daemon's cache runs on an injected clock, and so does the emulator,
// but tokd's token-endpoint client stamps each token with the real clock
// (daemon.Options.Clock does not reach it: source.New leaves
// oauth.Client.Now unset), so expires_in would be counted from the real
// time. The harness therefore has the emulator omit expires_in, which
// RFC 6749 §5.1 allows, so that tokd takes the expiry from the token's exp
// claim, set by the injected clock; and it runs that clock a month in the
// past, so that the real-clock IssuedAt tokd records lies after every
// expiry and the cache falls back to its own clock for the token's
// lifetime (cache.issuedAt). With that, every time tokd reasons about is on
// the injected clock.
//
// Nothing sleeps to synchronise: the daemon says it is ready through
// Options.Ready, every fetch ends with one "token refresh" log line, and
// the emulator's statistics count what reached it.
package faults_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/daemon"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/store"
)

// waitTimeout bounds every wait of these tests. It only turns a hang into
// a failure; nothing waits for it to pass.
const waitTimeout = 20 * time.Second

// childModeEnv selects what the re-executed test binary does (see
// TestMain): "daemon" runs daemon.Run as a process the parent can kill -9.
const childModeEnv = "TOKD_FAULTS_CHILD"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childModeEnv); mode {
	case "":
		os.Exit(m.Run())
	case "daemon":
		os.Exit(daemonChild(os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown child mode\n", childModeEnv, mode)
		os.Exit(2)
	}
}

// gap reports a shortfall of tokd against the faults issue. Each was
// found by these tests and then fixed; the message says what it was.
func gap(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Errorf("fault handling regressed: "+format, args...)
}

// The identity of the test app and user registered in every emulator.
const (
	testClientID  = "tokd-faults-test"
	testUser      = "faults.test@example.com"
	testCertAlias = "tokd-faults"
)

// testKeys are generated once per process: RSA key generation under -race
// costs a good part of a second.
type keySet struct {
	signing *rsa.PrivateKey // the emulator's token signing key
	app     *rsa.PrivateKey // the key of the certificate imported into the app
}

var testKeys = sync.OnceValue(func() keySet {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	return keySet{signing: gen(), app: gen()}
})

// fakeEpoch returns a start for an injected clock: a month before now, on
// a whole second (the emulator's iat and exp are whole seconds). See the
// package comment for why it lies in the past.
func fakeEpoch() time.Time {
	return time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second).UTC()
}

// envOptions shape an env.
type envOptions struct {
	// now is the identity domain's clock; nil means the real one.
	now func() time.Time
	// lifetime caps the access tokens' lifetime; 0 leaves the emulator's
	// default, one hour.
	lifetime time.Duration
	// omitExpiresIn makes token answers carry no expires_in (see the
	// package comment).
	omitExpiresIn bool
	// tls serves the token endpoint over TLS, with a certificate tokd
	// trusts (through ca_file) until endpoint.setTrusted(false).
	tls bool
}

// env is one test's world: an emulator behind an endpoint, the files a
// configuration names, a socket path, a state directory and the daemon's
// logs.
type env struct {
	t        *testing.T
	em       *emulator.Emulator
	tap      *tap
	ep       *endpoint
	dir      string // holds the configuration, key, secret and CA
	cfgPath  string
	keyPath  string
	secPath  string
	caPath   string // "" without TLS
	stateDir string
	socket   string
	logs     *logSink
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	keys := testKeys()
	em, err := emulator.New(emulator.Options{SigningKey: keys.signing, Now: opts.now})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := emulator.NewSelfSignedCert(keys.app, "tokd faults test", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var secret [24]byte
	rand.Read(secret[:])
	em.AddUser(testUser)
	err = em.AddApp(emulator.App{
		ClientID:            testClientID,
		ClientSecret:        base64.StdEncoding.EncodeToString(secret[:]),
		Certs:               map[string]*x509.Certificate{testCertAlias: cert},
		GrantTypes:          []string{emulator.GrantJWTBearer, emulator.GrantClientCredentials, emulator.GrantRefreshToken},
		AccessTokenLifetime: opts.lifetime,
	})
	if err != nil {
		t.Fatal(err)
	}

	e := &env{t: t, em: em, dir: t.TempDir(), logs: newLogSink()}
	e.tap = &tap{next: em, omitExpiresIn: opts.omitExpiresIn}
	e.ep = &endpoint{handler: e.tap, addr: "127.0.0.1:0"}
	if opts.tls {
		e.ep.certs = newCertSet(t)
		e.ep.trusted.Store(true)
		e.caPath = filepath.Join(e.dir, "ca.pem")
		writeFile(t, e.caPath, e.ep.certs.trustedCAPEM, 0o644)
	}
	e.ep.up(t)
	t.Cleanup(e.ep.down)
	if err := em.SetDomainURL(e.ep.url()); err != nil {
		t.Fatal(err)
	}

	e.cfgPath = filepath.Join(e.dir, "tokd.toml")
	e.keyPath = filepath.Join(e.dir, "user.pem")
	e.secPath = filepath.Join(e.dir, "client.secret")
	der, err := x509.MarshalPKCS8PrivateKey(keys.app)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	writeFile(t, e.secPath, []byte(base64.StdEncoding.EncodeToString(secret[:])+"\n"), 0o600)
	e.stateDir = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(e.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.socket = filepath.Join(shortTempDir(t), "tokd.sock")
	return e
}

// shortTempDir returns a new directory under os.TempDir with a short name,
// since sun_path holds 108 bytes and t.TempDir's names are long.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// clientCredentialsProfile returns the TOML of a client_credentials
// profile against the endpoint; extra lines go into the profile's table.
// Its requests carry no assertion, so they do not depend on the clock.
func (e *env) clientCredentialsProfile(name string, extra ...string) string {
	if e.caPath != "" {
		extra = append(extra, fmt.Sprintf("ca_file = %q", e.caPath))
	}
	return fmt.Sprintf(`
[profiles.%[1]s]
domain_url = %[2]q
client_id = %[3]q
client_secret_file = %[4]q
grant_type = "client_credentials"
scopes = ["urn:opc:idm:__myscopes__"]
%[5]s
`, name, e.ep.url(), testClientID, e.secPath, strings.Join(extra, "\n"))
}

// jwtProfile returns the TOML of a jwt-bearer profile against the
// endpoint, authenticating the client with its secret.
func (e *env) jwtProfile(name string, extra ...string) string {
	return fmt.Sprintf(`
[profiles.%[1]s]
domain_url = %[2]q
client_id = %[3]q
client_secret_file = %[4]q
scopes = ["urn:opc:idm:__myscopes__"]
%[5]s

[profiles.%[1]s.assertion]
subject = %[6]q
key_file = %[7]q
key_id = %[8]q
`, name, e.ep.url(), testClientID, e.secPath, strings.Join(extra, "\n"), testUser, e.keyPath, testCertAlias)
}

// writeConfig writes the configuration file from the given parts.
func (e *env) writeConfig(parts ...string) {
	e.t.Helper()
	writeFile(e.t, e.cfgPath, []byte(strings.Join(parts, "\n")), 0o600)
}

func (e *env) loadConfig() *config.Config {
	e.t.Helper()
	cfg, _, err := config.Load(e.cfgPath, config.Options{})
	if err != nil {
		e.t.Fatalf("loading the configuration: %v", err)
	}
	return cfg
}

// logger returns a logger writing everything, debug included, to e.logs.
func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// options returns the daemon.Options of a daemon of e on clock (nil: the
// real clock).
func (e *env) options(clock cache.Clock) daemon.Options {
	opts := daemon.Options{
		Config:   e.loadConfig(),
		Socket:   e.socket,
		StateDir: e.stateDir,
		Logger:   e.logger(),
		// A channel nobody sends on: the daemon neither reloads nor
		// installs a SIGHUP handler in the test process.
		Hangup: make(chan os.Signal),
	}
	if clock != nil {
		opts.Clock = clock
	}
	return opts
}

// running is a daemon.Run in a goroutine of this process.
type running struct {
	cancel context.CancelFunc
	done   chan error
	client *client.Client

	stopOnce sync.Once
	stopErr  error
}

// start runs a daemon of e on clock (nil: the real clock) and returns once
// it is ready. It is stopped at the end of the test, which fails if Run did
// not return nil.
func (e *env) start(clock cache.Clock) *running {
	t := e.t
	t.Helper()
	opts := e.options(clock)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	opts.Ready = func(socket string) { ready <- socket }
	go func() { r.done <- daemon.Run(ctx, opts) }()
	select {
	case socket := <-ready:
		r.client = &client.Client{Socket: socket, Timeout: waitTimeout}
	case err := <-r.done:
		cancel()
		t.Fatalf("daemon.Run returned before it was ready: %v\nlogs:\n%s", err, e.logs)
	case <-time.After(waitTimeout):
		cancel()
		t.Fatalf("daemon not ready after %v", waitTimeout)
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("daemon.Run at the end of the test: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", e.logs)
		}
	})
	return r
}

// stop cancels Run's context and returns Run's result.
func (r *running) stop() error {
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case r.stopErr = <-r.done:
		case <-time.After(waitTimeout):
			r.stopErr = fmt.Errorf("daemon.Run did not return %v after its context ended", waitTimeout)
		}
	})
	return r.stopErr
}

// get returns the profile's token, failing t on error.
func (r *running) get(t *testing.T, profile string) *apitype.Token {
	t.Helper()
	tok, err := r.client.Token(profile)
	if err != nil {
		t.Fatalf("get %s: %v", profile, err)
	}
	return tok
}

// refresh refreshes the profile's token, failing t on error.
func (r *running) refresh(t *testing.T, profile string) *apitype.Token {
	t.Helper()
	tok, err := r.client.Refresh(profile)
	if err != nil {
		t.Fatalf("refresh %s: %v", profile, err)
	}
	return tok
}

// profileStatus returns the named profile's status, failing t if there is
// none.
func (r *running) profileStatus(t *testing.T, name string) apitype.ProfileStatus {
	t.Helper()
	st, err := r.client.Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, p := range st.Profiles {
		if p.Profile == name {
			return p
		}
	}
	t.Fatalf("status lists no profile %s", name)
	return apitype.ProfileStatus{}
}

// apiStatus returns the HTTP status of a client error: 200 for none, -1
// for an error that is not an answer of the daemon.
func apiStatus(err error) int {
	if err == nil {
		return 200
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return -1
}

// openStore opens the store in e's state directory with the daemon's
// sealing key; what names it in failure messages. Its logs go to logs.
func (e *env) openStore(t *testing.T, what string, logs io.Writer) *store.Store {
	t.Helper()
	key, _, err := store.LoadKey(e.stateDir, "")
	if err != nil {
		t.Fatalf("%s: sealing key: %v", what, err)
	}
	st, err := store.Open(e.stateDir, store.Options{Key: key, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("%s does not open: %v", what, err)
	}
	return st
}

// refreshLine is in the one log line the cache writes when a fetch ends.
const refreshLine = `msg="token refresh"`

// tap sits between tokd and the emulator's token endpoint: it records the
// access tokens the emulator issues, in order, and can drop expires_in
// from token answers.
type tap struct {
	next          http.Handler
	omitExpiresIn bool

	mu     sync.Mutex // guards issued
	issued []string
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != emulator.TokenPath {
		tp.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	tp.next.ServeHTTP(rec, r)
	if r.Context().Err() != nil {
		return // the client left (a hanging fault); the emulator answered nothing
	}
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		var answer map[string]any
		if json.Unmarshal(body, &answer) == nil {
			if at, _ := answer["access_token"].(string); at != "" {
				tp.mu.Lock()
				tp.issued = append(tp.issued, at)
				tp.mu.Unlock()
				if tp.omitExpiresIn {
					delete(answer, "expires_in")
					body, _ = json.Marshal(answer)
				}
			}
		}
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// issuedTokens returns a copy of the access tokens issued so far, oldest
// first.
func (tp *tap) issuedTokens() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.issued...)
}

// endpoint serves the tap on a loopback address that stays the same when
// the endpoint goes down and comes back, over plain HTTP or over TLS.
type endpoint struct {
	handler http.Handler
	addr    string   // "127.0.0.1:0" until the first up
	certs   *certSet // nil: plain HTTP
	// trusted selects the certificate presented: signed by the CA in
	// ca_file, or by another.
	trusted    atomic.Bool
	handshakes atomic.Int64 // TLS handshakes begun

	mu  sync.Mutex // guards srv
	srv *http.Server
}

func (ep *endpoint) url() string {
	if ep.certs != nil {
		return "https://" + ep.addr
	}
	return "http://" + ep.addr
}

// up starts serving (again) on ep's address.
func (ep *endpoint) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", ep.addr)
	if err != nil {
		t.Fatalf("the token endpoint cannot come back on %s: %v", ep.addr, err)
	}
	ep.addr = ln.Addr().String()
	if ep.certs != nil {
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			ep.handshakes.Add(1)
			if ep.trusted.Load() {
				return &ep.certs.trusted, nil
			}
			return &ep.certs.rogue, nil
		}})
	}
	srv := &http.Server{Handler: ep.handler, ErrorLog: log.New(io.Discard, "", 0)}
	// Every request on a connection of its own, so that each attempt of
	// tokd's meets the endpoint as it is now (down, or with its present
	// certificate), never a connection left from before.
	srv.SetKeepAlivesEnabled(false)
	go srv.Serve(ln)
	ep.mu.Lock()
	ep.srv = srv
	ep.mu.Unlock()
}

// down closes the listener and every connection: the address then refuses
// connections.
func (ep *endpoint) down() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.srv != nil {
		ep.srv.Close()
		ep.srv = nil
	}
}

// certSet holds two certificates for 127.0.0.1: one signed by the CA that
// ca_file names, one by a CA tokd does not know.
type certSet struct {
	trustedCAPEM []byte
	trusted      tls.Certificate
	rogue        tls.Certificate
}

func newCertSet(t *testing.T) *certSet {
	t.Helper()
	trustedCA, trustedKey, trustedPEM := newCA(t, "tokd faults trusted CA")
	rogueCA, rogueKey, _ := newCA(t, "tokd faults rogue CA")
	return &certSet{
		trustedCAPEM: trustedPEM,
		trusted:      newLeaf(t, trustedCA, trustedKey),
		rogue:        newLeaf(t, rogueCA, rogueKey),
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// logSink collects log output and lets a test wait for lines.
type logSink struct {
	mu      sync.Mutex // guards buf and changed
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

// Write appends p; slog's handlers write one record per call.
func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the lines containing substr.
func (l *logSink) lines(substr string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// count returns the number of lines containing substr.
func (l *logSink) count(substr string) int { return len(l.lines(substr)) }

// waitCount waits until n lines contain substr and returns the n-th.
func (l *logSink) waitCount(t *testing.T, substr string, n int) string {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if lines := l.lines(substr); len(lines) >= n {
			return lines[n-1]
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("fewer than %d log lines containing %q after %v; logs:\n%s", n, substr, waitTimeout, l)
		}
	}
}
