package daemon_test

// This file is the in-process harness: an identity-domain emulator on
// httptest, a configuration written to a temporary directory and loaded
// with config.Load, daemon.Run in a goroutine, and the real client over the
// real socket. Nothing here sleeps to synchronise: the daemon says it is
// ready through Options.Ready, reloads and refusals are waited for in its
// logs, and faults are observed through the emulator's Taken channels.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache/clocktest"
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
// TestMain): "client" runs requests as another user, "daemon" runs
// daemon.Run as a separate process that the parent can kill -9.
const childModeEnv = "TOKD_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childModeEnv); mode {
	case "":
		os.Exit(m.Run())
	case "client":
		os.Exit(clientChild(os.Stdout, os.Stderr))
	case "daemon":
		os.Exit(daemonChild(os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown child mode\n", childModeEnv, mode)
		os.Exit(2)
	}
}

// The identity of the test app and user registered in every emulator.
const (
	testClientID  = "tokd-daemon-test"
	testUser      = "daemon.test@example.com"
	testCertAlias = "tokd-test"
)

// testKeys are generated once per process: RSA key generation under -race
// costs a good part of a second, and every test builds its own emulator.
type keySet struct {
	signing *rsa.PrivateKey // the emulator's token signing key
	app     *rsa.PrivateKey // the key of the certificate imported into the app
	console *rsa.PrivateKey // signs tokens<n>.tok files, as the OCI Console would
}

var testKeys = sync.OnceValue(func() keySet {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	return keySet{signing: gen(), app: gen(), console: gen()}
})

// env is one test's world: an emulator, the files a configuration names,
// a socket path, a state directory and the daemon's logs.
type env struct {
	t        *testing.T
	em       *emulator.Emulator
	url      string // the emulator's base URL, used as domain_url
	dir      string // holds the configuration, key and secret
	cfgPath  string
	keyPath  string
	secPath  string
	stateDir string
	credDir  string           // systemd's $CREDENTIALS_DIRECTORY; "" for none
	clock    *clocktest.Clock // the daemons' clock; nil for the real one
	socket   string
	logs     *logSink

	mu     sync.Mutex
	tokens []string // every token text the test saw; none may appear in the logs
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWithClock(t, nil)
}

// newEnvWithClock returns an env whose emulator and daemons run on clock;
// nil means the real clock.
func newEnvWithClock(t *testing.T, clock *clocktest.Clock) *env {
	t.Helper()
	keys := testKeys()
	emOpts := emulator.Options{SigningKey: keys.signing}
	if clock != nil {
		emOpts.Now = clock.Now
	}
	em, err := emulator.New(emOpts)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := emulator.NewSelfSignedCert(keys.app, "tokd daemon test", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var secret [24]byte
	rand.Read(secret[:])
	em.AddUser(testUser)
	err = em.AddApp(emulator.App{
		ClientID:     testClientID,
		ClientSecret: base64.StdEncoding.EncodeToString(secret[:]),
		Certs:        map[string]*x509.Certificate{testCertAlias: cert},
		GrantTypes:   []string{emulator.GrantJWTBearer, emulator.GrantClientCredentials, emulator.GrantRefreshToken},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	if err := em.SetDomainURL(srv.URL); err != nil {
		t.Fatal(err)
	}

	e := &env{t: t, em: em, url: srv.URL, dir: t.TempDir(), logs: newLogSink(), clock: clock}
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
	e.socket = filepath.Join(shortTempDir(t), "tokd.sock")
	// Registered before any daemon starts, so it runs after they stop.
	t.Cleanup(e.checkLogs)
	return e
}

// shortTempDir returns a new directory under os.TempDir with a short name,
// since sun_path holds 108 bytes and t.TempDir's names are long.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "td-")
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

// jwtProfile returns the TOML of a jwt-bearer profile against the
// emulator; extra lines go into the profile's table.
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
`, name, e.url, testClientID, e.secPath, strings.Join(extra, "\n"), testUser, e.keyPath, testCertAlias)
}

// importProfile returns the TOML of a profile that only serves tokens
// imported from a tokens<n>.tok file.
func importProfile(name string, extra ...string) string {
	return fmt.Sprintf("\n[profiles.%s]\ngrant_type = \"import\"\n%s\n", name, strings.Join(extra, "\n"))
}

// writeConfig writes the configuration file from the given parts.
func (e *env) writeConfig(parts ...string) {
	e.t.Helper()
	writeFile(e.t, e.cfgPath, []byte(strings.Join(parts, "\n")), 0o600)
}

// loadConfig loads the configuration file as tokd does.
func (e *env) loadConfig() (*config.Config, error) {
	cfg, _, err := config.Load(e.cfgPath, config.Options{})
	return cfg, err
}

// logger returns a logger writing everything, debug included, to e.logs.
func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// saw records token texts that must never appear in the logs.
func (e *env) saw(tokens ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tok := range tokens {
		if tok != "" {
			e.tokens = append(e.tokens, tok)
		}
	}
}

// checkLogs fails the test if the daemon's logs contain a token it served.
func (e *env) checkLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	logs := e.logs.String()
	for _, tok := range e.tokens {
		if how := leak([]byte(logs), tok); how != "" {
			e.t.Errorf("the daemon's logs hold a token (%.12s...): %s", tok, how)
		}
	}
	if e.t.Failed() {
		e.t.Logf("daemon logs:\n%s", logs)
	}
}

// openStore opens the store in e's state directory with the daemon's
// sealing key; what names it in the failure message. A daemon still
// holding the store makes it fail.
func (e *env) openStore(t *testing.T, what string) *store.Store {
	t.Helper()
	key, _, err := store.LoadKey(e.stateDir, e.credDir)
	if err != nil {
		t.Fatalf("%s: sealing key: %v", what, err)
	}
	st, err := store.Open(e.stateDir, store.Options{Key: key})
	if err != nil {
		t.Fatalf("%s does not open: %v", what, err)
	}
	return st
}

// requests returns the number of token requests the emulator has seen.
func (e *env) requests() int { return e.em.Stats().TokenRequests }

// verifyIssued fails unless tok is an access token the emulator signed
// for the test user.
func (e *env) verifyIssued(t *testing.T, tok string) {
	t.Helper()
	if err := e.checkIssued(tok); err != nil {
		t.Errorf("token %.16s...: %v", tok, err)
	}
}

func (e *env) checkIssued(tok string) error {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return e.em.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return fmt.Errorf("not issued by the emulator: %w", err)
	}
	if sub, _ := claims.GetSubject(); sub != testUser {
		return fmt.Errorf("sub = %q, want %q", sub, testUser)
	}
	return nil
}

// tokFile returns the body of a tokens<n>.tok file, as the OCI Console
// saves it, holding a JWT that expires after d, and the JWT.
func tokFile(t *testing.T, d time.Duration) (body []byte, access string) {
	t.Helper()
	now := time.Now()
	access, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "console-user", "iat": now.Unix(), "exp": now.Add(d).Unix(),
	}).SignedString(testKeys().console)
	if err != nil {
		t.Fatal(err)
	}
	body, err = json.Marshal(map[string]string{"app_access_token": access})
	if err != nil {
		t.Fatal(err)
	}
	return body, access
}

// running is a daemon.Run in a goroutine of this process.
type running struct {
	e        *env
	cancel   context.CancelFunc
	done     chan error     // receives Run's result
	hangup   chan os.Signal // the daemon's SIGHUP
	stopping chan struct{}  // closed when Run calls Options.Stopping
	socket   string
	client   *client.Client

	stopOnce sync.Once
	stopErr  error
}

// baseOptions returns the Options every daemon of e runs with.
func (e *env) baseOptions(cfg *config.Config) daemon.Options {
	opts := daemon.Options{
		Config:   cfg,
		Reload:   e.loadConfig,
		Socket:   e.socket,
		StateDir: e.stateDir,
		Logger:   e.logger(),

		CredentialsDirectory: e.credDir,
	}
	if e.clock != nil {
		opts.Clock = e.clock
	}
	return opts
}

// start runs the daemon on e's configuration file and returns once it is
// ready. The daemon is stopped at the end of the test, which then fails if
// Run did not return nil.
func (e *env) start() *running {
	t := e.t
	t.Helper()
	cfg, err := e.loadConfig()
	if err != nil {
		t.Fatalf("loading the configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		e: e, cancel: cancel,
		done:     make(chan error, 1),
		hangup:   make(chan os.Signal),
		stopping: make(chan struct{}),
	}
	ready := make(chan string, 1)
	opts := e.baseOptions(cfg)
	opts.Hangup = r.hangup
	opts.Ready = func(socket string) { ready <- socket }
	opts.Stopping = func() { close(r.stopping) }
	go func() { r.done <- daemon.Run(ctx, opts) }()
	select {
	case r.socket = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("daemon.Run returned before it was ready: %v", err)
	case <-time.After(waitTimeout):
		cancel()
		t.Fatalf("daemon not ready after %v", waitTimeout)
	}
	r.client = &client.Client{Socket: r.socket, Timeout: waitTimeout}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("daemon.Run at the end of the test: %v", err)
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

// runFailing runs the daemon with opts and returns Run's error; t fails
// if the daemon gets as far as serving.
func (e *env) runFailing(t *testing.T, opts daemon.Options) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := false
	opts.Ready = func(string) { served = true; cancel() }
	err := daemon.Run(ctx, opts)
	if served {
		t.Errorf("daemon.Run served; want it to fail")
	}
	return err
}

// reload sends the daemon a SIGHUP and waits for the log line that says
// how it ended: "reloaded" or "refused".
func (r *running) reload(t *testing.T) string {
	t.Helper()
	from := r.e.logs.Len()
	select {
	case r.hangup <- syscall.SIGHUP:
	case <-time.After(waitTimeout):
		t.Fatalf("the daemon did not take the SIGHUP")
	}
	line := r.e.logs.waitFor(t, from, "configuration reloaded", "reload refused")
	if strings.Contains(line, "reload refused") {
		return "refused"
	}
	return "reloaded"
}

// get returns the profile's token, failing t on error.
func (r *running) get(t *testing.T, profile string) *apitype.Token {
	t.Helper()
	tok, err := r.client.Token(profile)
	if err != nil {
		t.Fatalf("get %s: %v", profile, err)
	}
	r.e.saw(tok.AccessToken)
	return tok
}

// refresh refreshes the profile's token, failing t on error.
func (r *running) refresh(t *testing.T, profile string) *apitype.Token {
	t.Helper()
	tok, err := r.client.Refresh(profile)
	if err != nil {
		t.Fatalf("refresh %s: %v", profile, err)
	}
	r.e.saw(tok.AccessToken)
	return tok
}

// status returns the status the test's user sees, failing t on error.
func (r *running) status(t *testing.T) *apitype.Status {
	t.Helper()
	st, err := r.client.Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// profileStatus returns the named profile's status, or nil.
func profileStatus(st *apitype.Status, name string) *apitype.ProfileStatus {
	for i := range st.Profiles {
		if st.Profiles[i].Profile == name {
			return &st.Profiles[i]
		}
	}
	return nil
}

func profileNames(st *apitype.Status) []string {
	var names []string
	for _, p := range st.Profiles {
		names = append(names, p.Profile)
	}
	return names
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

// rawClient is a net/http client over the daemon's socket, for requests
// that tokctl's client would never make.
func rawClient(socket string) *http.Client {
	return &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives: true,
		},
	}
}

// waitInFrame waits until n goroutines of this process have frame, a
// function, on their stack. It polls the goroutine dump for the
// condition and never guesses a duration.
func waitInFrame(t *testing.T, frame string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	buf := make([]byte, 1<<20)
	for {
		m := runtime.Stack(buf, true)
		if m == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		got := 0
		for _, g := range strings.Split(string(buf[:m]), "\n\n") {
			if strings.Contains(g, frame) {
				got++
			}
		}
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("%d goroutines have %s on their stack, want %d", got, frame, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitInGet waits until n goroutines of this process are inside the
// cache's Get, that is, n requests are waiting for a token fetch. The
// cache offers no event for this, so the goroutine dump is polled; the
// poll interval is only a wait for the condition, never a guess of how
// long something takes.
func waitInGet(t *testing.T, n int) {
	t.Helper()
	waitInFrame(t, "github.com/tokd/tokd/cache.(*Cache).Get(", n)
}

// hang is an emulator fault that holds token requests until released.
type hang struct {
	fault emulator.Fault
	taken chan struct{}
}

// hangFault returns a fault holding every request that takes it until
// release is called; release may be called more than once.
func hangFault() (*hang, func()) {
	wait := make(chan struct{})
	h := &hang{taken: make(chan struct{}, 1)}
	h.fault = emulator.Fault{Wait: wait, Taken: h.taken}
	var once sync.Once
	return h, func() { once.Do(func() { close(wait) }) }
}

// waitTaken waits until a token request has taken the fault.
func (h *hang) waitTaken(t *testing.T) {
	t.Helper()
	select {
	case <-h.taken:
	case <-time.After(waitTimeout):
		t.Fatal("no token request reached the emulator")
	}
}

// logSink collects log output and lets a test wait for a line.
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

// Len returns the number of bytes written so far, an offset for waitFor.
func (l *logSink) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

// waitFor waits until a line written after offset from contains one of
// the substrings, and returns that line.
func (l *logSink) waitFor(t *testing.T, from int, substrs ...string) string {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		l.mu.Lock()
		text := l.buf.String()[from:]
		changed := l.changed
		l.mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			for _, s := range substrs {
				if strings.Contains(line, s) {
					return line
				}
			}
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no log line containing any of %q after %v; logs since:\n%s", substrs, waitTimeout, text)
		}
	}
}

// childResult is one line a client child prints.
type childResult struct {
	Op       string   `json:"op"`
	Profile  string   `json:"profile,omitempty"`
	UID      int      `json:"uid,omitempty"`
	Status   int      `json:"status"`
	Token    string   `json:"token,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// clientChild runs the requests listed in TOKD_TEST_OPS ("get:ci
// status ...") against TOKD_TEST_SOCKET and prints one JSON line each,
// after one saying which uid it runs as.
func clientChild(stdout, stderr io.Writer) int {
	c := &client.Client{Socket: os.Getenv("TOKD_TEST_SOCKET"), Timeout: waitTimeout}
	enc := json.NewEncoder(stdout)
	enc.Encode(childResult{Op: "whoami", UID: os.Getuid(), Status: 200})
	for _, op := range strings.Fields(os.Getenv("TOKD_TEST_OPS")) {
		verb, profile, _ := strings.Cut(op, ":")
		res := childResult{Op: verb, Profile: profile}
		var err error
		switch verb {
		case "get":
			var tok *apitype.Token
			if tok, err = c.Token(profile); err == nil {
				res.Token = tok.AccessToken
			}
		case "refresh":
			var tok *apitype.Token
			if tok, err = c.Refresh(profile); err == nil {
				res.Token = tok.AccessToken
			}
		case "forget":
			err = c.Forget(profile)
		case "import":
			var tok *apitype.Token
			if tok, err = c.Import(profile, []byte(os.Getenv("TOKD_TEST_TOKFILE"))); err == nil {
				res.Token = tok.AccessToken
			}
		case "status":
			var st *apitype.Status
			if st, err = c.Status(); err == nil {
				res.Profiles = profileNames(st)
			}
		default:
			fmt.Fprintf(stderr, "unknown op %q\n", op)
			return 2
		}
		res.Status = apiStatus(err)
		if err != nil {
			res.Error = err.Error()
		}
		enc.Encode(res)
	}
	return 0
}

// daemonChild runs daemon.Run on TOKD_TEST_CONFIG with TOKD_TEST_SOCKET
// and TOKD_TEST_STATE, logging to stderr, and prints "ready SOCKET" on
// stdout once the daemon serves. It runs until it is killed.
func daemonChild(stdout, stderr io.Writer) int {
	cfgPath := os.Getenv("TOKD_TEST_CONFIG")
	cfg, _, err := config.Load(cfgPath, config.Options{})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	err = daemon.Run(context.Background(), daemon.Options{
		Config:   cfg,
		Socket:   os.Getenv("TOKD_TEST_SOCKET"),
		StateDir: os.Getenv("TOKD_TEST_STATE"),
		Logger:   log,
		Ready:    func(socket string) { fmt.Fprintf(stdout, "ready %s\n", socket) },
	})
	fmt.Fprintln(stderr, "daemon.Run:", err)
	return 1
}

// child is a re-executed test binary.
type child struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr *logSink
}

// startChild runs the test binary at bin in the given child mode.
func startChild(t *testing.T, bin, mode string, env []string, cred *syscall.Credential) *child {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = "/"
	cmd.Env = append([]string{childModeEnv + "=" + mode, "PATH=/usr/bin:/bin"}, env...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	c := &child{cmd: cmd, lines: make(chan string, 1024), stderr: newLogSink()}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the child: %v", err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return c
}

// line returns the child's next line of output, failing at EOF.
func (c *child) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("the child ended its output early; stderr:\n%s", c.stderr.String())
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no output from the child after %v; stderr:\n%s", waitTimeout, c.stderr.String())
	}
	return ""
}

// publicCopyOfTestBinary copies the running test binary into a new
// directory that every user may read and search, so that another uid can
// execute it.
func publicCopyOfTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "daemon.test")
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
