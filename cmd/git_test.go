package cmd_test

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The git credential helper, proven with the real git (2.39 here): a
// clone over HTTP from git http-backend behind a server that demands the
// token, configured with the README's snippet; and the protocol details
// this git does not exercise (capabilities, expiry, wwwauth[]) fed to the
// helper directly.

// gitRepoFile is the one file of the test repository.
const (
	gitRepoFile    = "hello.txt"
	gitRepoContent = "hello from tokd's git test\n"
)

// gitBareRepo creates a project root holding repo.git, a bare repository
// with one commit on main, and returns the root.
func gitBareRepo(t *testing.T) string {
	t.Helper()
	root, work, home := t.TempDir(), t.TempDir(), t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=tokd test", "GIT_AUTHOR_EMAIL=test@tokd.invalid",
		"GIT_COMMITTER_NAME=tokd test", "GIT_COMMITTER_EMAIL=test@tokd.invalid",
	}
	bare := filepath.Join(root, "repo.git")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("init", "-q", "--bare", "-b", "main", bare)
	run("init", "-q", "-b", "main", work)
	if err := os.WriteFile(filepath.Join(work, gitRepoFile), []byte(gitRepoContent), 0o644); err != nil {
		t.Fatal(err)
	}
	run("-C", work, "add", gitRepoFile)
	run("-C", work, "commit", "-q", "-m", "first")
	run("-C", work, "push", "-q", bare, "main")
	return root
}

// gitServer serves the repositories under a project root with git
// http-backend (CGI), and only to requests whose Basic credential is
// the user "oauth2" with an access token the emulator signed.
type gitServer struct {
	*httptest.Server
	URL     string // known before Start (which sets Server.URL, the same)
	backend *cgi.Handler
	key     *rsa.PublicKey // set before Start
	// rejectFirst makes the server refuse the first valid token it sees
	// (every time it comes back), as a server would a revoked token.
	rejectFirst bool

	mu         sync.Mutex
	withAuth   int      // requests that carried an Authorization header
	users      []string // Basic user names seen
	accepted   []string // tokens let through to http-backend
	refused    []string // valid tokens refused because of rejectFirst
	invalid    []string // credentials that were not the user or a valid token
	firstToken string
}

// newGitServer returns a server that is not started yet: its URL is
// known, so that the tokd configuration can name it, and start runs it
// once the emulator's key is known.
func newGitServer(t *testing.T, root string) *gitServer {
	t.Helper()
	s := &gitServer{backend: &cgi.Handler{
		Path: gitExecPath(t) + "/git-http-backend",
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}}
	s.Server = httptest.NewUnstartedServer(s)
	s.URL = "http://" + s.Listener.Addr().String()
	t.Cleanup(s.Close)
	return s
}

// start runs the server, checking tokens against key.
func (s *gitServer) start(key *rsa.PublicKey) {
	s.key = key
	s.Start()
}

// gitExecPath is where git keeps git-http-backend.
func gitExecPath(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (s *gitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.admit(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokd-test"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	s.backend.ServeHTTP(w, r)
}

func (s *gitServer) admit(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "" {
		s.withAuth++
	}
	if !ok {
		return false
	}
	s.users = append(s.users, user)
	if user != "oauth2" || s.verify(pass) != nil {
		s.invalid = append(s.invalid, user+":"+pass)
		return false
	}
	if s.rejectFirst && (s.firstToken == "" || s.firstToken == pass) {
		s.firstToken = pass
		s.refused = append(s.refused, pass)
		return false
	}
	s.accepted = append(s.accepted, pass)
	return true
}

// verify checks that token is an unexpired JWT the emulator signed.
func (s *gitServer) verify(token string) error {
	_, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired())
	return err
}

// seen returns a snapshot of what the server saw.
func (s *gitServer) seen() (withAuth int, users, accepted, refused, invalid []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withAuth, slices.Clone(s.users), slices.Clone(s.accepted), slices.Clone(s.refused), slices.Clone(s.invalid)
}

// gitEnv is e's environment for git: no system configuration, no
// prompts, no askpass, nothing inherited from a surrounding git, and the
// trace of the commands git runs (its credential helpers) in traceFile
// when that is not empty.
func gitEnv(e *tokdEnv, traceFile string) []string {
	env := slices.DeleteFunc(slices.Clone(e.Env), func(kv string) bool {
		return strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "SSH_ASKPASS=")
	})
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	if traceFile != "" {
		env = append(env, "GIT_TRACE="+traceFile)
	}
	return env
}

// gitConfigureREADME runs the README's git snippet, pointed at url, in
// e's environment: it writes e.Dir/.gitconfig.
func gitConfigureREADME(t *testing.T, e *tokdEnv, url string) {
	t.Helper()
	block := readmeBlock(t, "### git")
	if !strings.Contains(block, "https://git.example.com") {
		t.Fatalf("README's git block does not name https://git.example.com:\n%s", block)
	}
	script := strings.ReplaceAll(block, "https://git.example.com", url)
	cmd := e.Command("sh", "-e", "-c", script)
	cmd.Env = gitEnv(e, "")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("README's git snippet: %v\n%s\n%s", err, script, out)
	}
	out, err := os.ReadFile(filepath.Join(e.Dir, ".gitconfig"))
	if err != nil || !strings.Contains(string(out), url) {
		t.Fatalf("the README's snippet left ~/.gitconfig = %q (%v)", out, err)
	}
}

// gitClone clones url/repo.git into a new directory and returns it, with
// git's combined output.
func gitClone(t *testing.T, e *tokdEnv, url, traceFile string) (string, string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "clone")
	cmd := e.Command("git", "clone", url+"/repo.git", dst)
	cmd.Env = gitEnv(e, traceFile)
	out, err := cmd.CombinedOutput()
	return dst, string(out), err
}

// gitTokctlGet returns what "tokctl get demo" prints, without the newline.
func gitTokctlGet(t *testing.T, e *tokdEnv) string {
	t.Helper()
	out, err := e.Command("tokctl", "get", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get demo: %v", err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// gitHelperCalls returns the credential helper actions git ran, from a
// GIT_TRACE file: "get", "store", "erase".
func gitHelperCalls(t *testing.T, traceFile string) []string {
	t.Helper()
	data, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	re := regexp.MustCompile(`run_command: 'tokctl git-credential (\w+)'`)
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		calls = append(calls, m[1])
	}
	return calls
}

func TestGitClone(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t, gitBareRepo(t))
	e := startTokd(t, fmt.Sprintf("[profiles.demo.git]\nurls = [%q]\n", srv.URL+"/"))
	srv.start(e.Em.PublicKey())
	gitConfigureREADME(t, e, srv.URL)

	trace := filepath.Join(t.TempDir(), "trace")
	dst, out, err := gitClone(t, e, srv.URL, trace)
	if err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dst, gitRepoFile))
	if err != nil || string(got) != gitRepoContent {
		t.Errorf("cloned %s = %q (%v), want %q", gitRepoFile, got, err, gitRepoContent)
	}

	withAuth, users, accepted, refused, invalid := srv.seen()
	if len(accepted) == 0 || len(refused) != 0 || len(invalid) != 0 {
		t.Errorf("server accepted %d tokens, refused %d, saw %d bad credentials (%q)", len(accepted), len(refused), len(invalid), invalid)
	}
	for _, u := range users {
		if u != "oauth2" {
			t.Errorf("server saw user %q, want the profile's git.username oauth2", u)
		}
	}
	if withAuth != len(users) {
		t.Errorf("%d requests had an Authorization header, %d of them Basic", withAuth, len(users))
	}
	tok := gitTokctlGet(t, e)
	for _, a := range accepted {
		if a != tok {
			t.Errorf("git sent %.20q..., tokctl get demo prints %.20q...", a, tok)
		}
	}
	// git approves a credential that worked: the helper's store, which
	// changes nothing.
	if calls := gitHelperCalls(t, trace); !slices.Equal(calls, []string{"get", "store"}) {
		t.Errorf("git ran the helper with %q, want get then store", calls)
	}
	if n := e.Em.Stats().TokenRequests; n != 1 {
		t.Errorf("emulator saw %d token requests, want 1", n)
	}
}

// TestGitOtherHelpersNeverStoreTheToken: a user who already has a generic
// helper that saves what works (credential.helper store, in plain text in
// ~/.git-credentials) and then runs the README's snippet (twice): git must not
// hand tokd's token to that helper, which would keep it past its expiry
// and offer it again.
func TestGitOtherHelpersNeverStoreTheToken(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t, gitBareRepo(t))
	e := startTokd(t, fmt.Sprintf("[profiles.demo.git]\nurls = [%q]\n", srv.URL+"/"))
	srv.start(e.Em.PublicKey())
	store := e.Command("git", "config", "--global", "credential.helper", "store")
	store.Env = gitEnv(e, "")
	if out, err := store.CombinedOutput(); err != nil {
		t.Fatalf("git config credential.helper store: %v\n%s", err, out)
	}
	// Pasted twice, the snippet leaves the same two helpers.
	gitConfigureREADME(t, e, srv.URL)
	gitConfigureREADME(t, e, srv.URL)
	list := e.Command("git", "config", "--global", "--get-all", "credential."+srv.URL+".helper")
	list.Env = gitEnv(e, "")
	if out, err := list.Output(); err != nil || string(out) != "\n!tokctl git-credential\n" {
		t.Errorf("helpers for %s after the snippet twice: %q (%v), want \"\" then the tokctl helper", srv.URL, out, err)
	}

	if _, out, err := gitClone(t, e, srv.URL, ""); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	saved, err := os.ReadFile(filepath.Join(e.Dir, ".git-credentials"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if tok := gitTokctlGet(t, e); strings.Contains(string(saved), tok) || len(saved) != 0 {
		t.Errorf("credential.helper store saved %d bytes to ~/.git-credentials (the token: %v)", len(saved), strings.Contains(string(saved), tok))
	}
}

func TestGitRejectedTokenIsErased(t *testing.T) {
	t.Parallel()
	srv := newGitServer(t, gitBareRepo(t))
	srv.rejectFirst = true
	// tokd's log is read once tokd has stopped: this cleanup, registered
	// before startTokd's, runs after them.
	var e *tokdEnv
	t.Cleanup(func() {
		if e != nil && !strings.Contains(e.stderr.String(), "token refused by a git server") {
			t.Errorf("tokd's log does not mention the refused token:\n%s", e.stderr)
		}
	})
	e = startTokd(t, fmt.Sprintf("[profiles.demo.git]\nurls = [%q]\n", srv.URL+"/"))
	srv.start(e.Em.PublicKey())
	gitConfigureREADME(t, e, srv.URL)

	// tokd fetches again as soon as the token is forgotten: count from
	// before the clone.
	before := e.Em.Stats().TokenRequests
	trace1 := filepath.Join(t.TempDir(), "trace")
	_, out, err := gitClone(t, e, srv.URL, trace1)
	if err == nil {
		t.Fatalf("the first clone succeeded with a refused token:\n%s", out)
	}
	if !strings.Contains(out, "Authentication failed") {
		t.Errorf("the first clone failed otherwise than on authentication:\n%s", out)
	}
	if calls := gitHelperCalls(t, trace1); !slices.Equal(calls, []string{"get", "erase"}) {
		t.Errorf("git ran the helper with %q, want get then erase", calls)
	}
	_, _, _, refused, _ := srv.seen()
	if len(refused) == 0 {
		t.Fatal("the server refused no token")
	}
	first := refused[0]

	tok := gitTokctlGet(t, e)
	if tok == first {
		t.Fatal("after git's erase, tokctl get demo still prints the refused token")
	}
	if after := e.Em.Stats().TokenRequests; after <= before {
		t.Errorf("token requests went from %d to %d after the erase, want more", before, after)
	}

	trace2 := filepath.Join(t.TempDir(), "trace")
	dst, out, err := gitClone(t, e, srv.URL, trace2)
	if err != nil {
		t.Fatalf("the second clone: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(dst, gitRepoFile)); err != nil || string(got) != gitRepoContent {
		t.Errorf("cloned %s = %q (%v), want %q", gitRepoFile, got, err, gitRepoContent)
	}
	if calls := gitHelperCalls(t, trace2); !slices.Equal(calls, []string{"get", "store"}) {
		t.Errorf("the second clone ran the helper with %q, want get then store", calls)
	}
	_, _, accepted, refused, invalid := srv.seen()
	if len(accepted) == 0 || len(invalid) != 0 {
		t.Errorf("server accepted %d tokens and saw bad credentials %q", len(accepted), invalid)
	}
	for _, a := range accepted {
		if a != tok {
			t.Errorf("the second clone sent %.20q..., want the new token %.20q...", a, tok)
		}
	}
	for _, r := range refused {
		if r != first {
			t.Errorf("the server refused a token other than the first")
		}
	}
}

func TestGitOtherHostGetsNothing(t *testing.T) {
	t.Parallel()
	root := gitBareRepo(t)
	ours, other := newGitServer(t, root), newGitServer(t, root)
	e := startTokd(t, fmt.Sprintf("[profiles.demo.git]\nurls = [%q]\n", ours.URL+"/"))
	ours.start(e.Em.PublicKey())
	other.start(e.Em.PublicKey())
	// The helper for every host, so that tokd itself must refuse.
	cfg := e.Command("git", "config", "--global", "credential.helper", "!tokctl git-credential")
	cfg.Env = gitEnv(e, "")
	if out, err := cfg.CombinedOutput(); err != nil {
		t.Fatalf("git config: %v\n%s", err, out)
	}

	trace := filepath.Join(t.TempDir(), "trace")
	_, out, err := gitClone(t, e, other.URL, trace)
	if err == nil {
		t.Fatalf("a clone from a host no profile names succeeded:\n%s", out)
	}
	if !strings.Contains(out, "terminal prompts disabled") {
		t.Errorf("the clone failed otherwise than for want of a credential:\n%s", out)
	}
	if calls := gitHelperCalls(t, trace); !slices.Equal(calls, []string{"get"}) {
		t.Errorf("git ran the helper with %q, want get only", calls)
	}
	if withAuth, _, _, _, _ := other.seen(); withAuth != 0 {
		t.Errorf("the other server saw %d requests with an Authorization header", withAuth)
	}

	// The same configuration serves the host the profile names.
	if _, out, err := gitClone(t, e, ours.URL, ""); err != nil {
		t.Fatalf("clone from the profile's host: %v\n%s", err, out)
	}

	// The right host and port over a scheme the profile does not name.
	host := strings.TrimPrefix(ours.URL, "http://")
	for _, in := range []string{
		"protocol=https\nhost=" + host + "\n\n",
		"url=https://" + host + "/repo.git\n\n",
		"protocol=http\nhost=" + strings.Replace(host, "127.0.0.1", "localhost", 1) + "\n\n",
	} {
		stdout, stderr, code := gitHelper(t, e, in, "get")
		if stdout != "" || code != 0 {
			t.Errorf("get for %q: exit %d, stdout %q, stderr %q; want nothing and 0", in, code, stdout, stderr)
		}
	}
}

// gitHelper runs "tokctl git-credential ARGS" with stdin and returns its
// stdout, stderr and exit code.
func gitHelper(t *testing.T, e *tokdEnv, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := e.Command("tokctl", append([]string{"git-credential"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exitErr):
		return stdout.String(), stderr.String(), exitErr.ExitCode()
	}
	t.Fatalf("tokctl git-credential: %v", err)
	return "", "", 0
}

// gitAttrs parses a helper's answer into its lines, in order.
func gitAttrs(t *testing.T, out string) [][2]string {
	t.Helper()
	var attrs [][2]string
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok || !strings.HasSuffix(line, "\n") {
			t.Fatalf("answer line %q is not key=value\\n; answer:\n%s", line, out)
		}
		attrs = append(attrs, [2]string{k, v})
	}
	return attrs
}

// gitImportToken makes a Console-style token file for the import
// profile, expiring in an hour, and returns the file and the token.
func gitImportToken(t *testing.T) (string, string) {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "console-user", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString([]byte("not a secret: tokd does not verify imported tokens"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens1.tok")
	if err := os.WriteFile(path, fmt.Appendf(nil, `{"app_access_token":%q}`, tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tok
}

func TestGitHelperProtocol(t *testing.T) {
	t.Parallel()
	// demo alone on git.example.com; on git.test demo has team/ and the
	// import profile "other" the whole host.
	e := startTokd(t, `[profiles.demo.git]
urls = ["https://git.example.com/", "http://git.test/team/"]

[profiles.other]
grant_type = "import"

[profiles.other.git]
urls = ["http://git.test/"]
username = "x-other"
`)
	tokFile, otherTok := gitImportToken(t)
	if out, err := e.Command("tokctl", "import", "other", tokFile).CombinedOutput(); err != nil {
		t.Fatalf("tokctl import: %v\n%s", err, out)
	}
	out, err := e.Command("tokctl", "get", "--json", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get --json demo: %v", err)
	}
	var demo struct {
		AccessToken string    `json:"access_token"`
		ExpiresAt   time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(out, &demo); err != nil || demo.AccessToken == "" {
		t.Fatalf("tokctl get --json demo = %s (%v)", out, err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.Parse(demo.AccessToken, func(*jwt.Token) (any, error) { return e.Em.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"})); err != nil {
		t.Fatalf("demo's token: %v", err)
	}
	if _, _, err := jwt.NewParser().ParseUnverified(demo.AccessToken, claims); err != nil {
		t.Fatal(err)
	}
	jwtExp, err := claims.GetExpirationTime()
	if err != nil || jwtExp == nil {
		t.Fatalf("demo's token has no exp: %v", err)
	}
	demoUser := [2]string{"username", "oauth2"}
	demoPass := [2]string{"password", demo.AccessToken}

	checkExpiry := func(t *testing.T, attrs [][2]string) {
		t.Helper()
		for _, a := range attrs {
			if a[0] != "password_expiry_utc" {
				continue
			}
			n, err := strconv.ParseInt(a[1], 10, 64)
			if err != nil {
				t.Errorf("password_expiry_utc=%q is not unix seconds", a[1])
				return
			}
			if n != demo.ExpiresAt.Unix() {
				t.Errorf("password_expiry_utc=%d, tokctl get says the token expires at %d", n, demo.ExpiresAt.Unix())
			}
			if d := n - jwtExp.Unix(); d < -5 || d > 5 {
				t.Errorf("password_expiry_utc=%d, the token's exp is %d", n, jwtExp.Unix())
			}
			return
		}
		t.Errorf("no password_expiry_utc in %q", attrs)
	}

	t.Run("authtype", func(t *testing.T) {
		stdout, stderr, code := gitHelper(t, e,
			"capability[]=authtype\nprotocol=https\nhost=git.example.com\nwwwauth[]=Bearer realm=\"x\"\n\n", "get")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		attrs := gitAttrs(t, stdout)
		want := [][2]string{{"capability[]", "authtype"}, {"authtype", "Bearer"}, {"credential", demo.AccessToken}, {"ephemeral", "true"}}
		for _, w := range want {
			if !slices.Contains(attrs, w) {
				t.Errorf("answer lacks %s=%.20s...: %q", w[0], w[1], stdout)
			}
		}
		for _, a := range attrs {
			if a[0] == "username" || a[0] == "password" {
				t.Errorf("a Bearer answer holds %s: %q", a[0], stdout)
			}
		}
		checkExpiry(t, attrs)
	})

	t.Run("password", func(t *testing.T) {
		for _, in := range []string{
			"protocol=https\nhost=git.example.com\n\n",
			"protocol=https\nhost=git.example.com\npath=team/repo.git\n",
			"url=https://git.example.com/team/repo.git\n\n",
			// wwwauth[], unknown attributes and other capabilities are ignored.
			"protocol=https\nhost=git.example.com\nwwwauth[]=Basic realm=\"x\"\nwwwauth[]=Bearer\n" +
				"capability[]=state\nfrobnicate=1\noauth_refresh_token=rt\nquit=0\n\n",
			"protocol=https\r\nhost=git.example.com\r\n\r\n",
		} {
			stdout, stderr, code := gitHelper(t, e, in, "get")
			if code != 0 {
				t.Errorf("get %q: exit %d, stderr %q", in, code, stderr)
				continue
			}
			attrs := gitAttrs(t, stdout)
			if !slices.Contains(attrs, demoUser) || !slices.Contains(attrs, demoPass) {
				t.Errorf("get %q: answer %q lacks username=oauth2 or the token", in, stdout)
			}
			for _, a := range attrs {
				if a[0] == "authtype" || a[0] == "credential" || a[0] == "ephemeral" || a[0] == "capability[]" {
					t.Errorf("get %q: answer without the capability holds %s", in, a[0])
				}
			}
			checkExpiry(t, attrs)
		}
	})

	t.Run("git credential fill", func(t *testing.T) {
		cmd := e.Command("git", "-c", "credential.helper=", "-c", "credential.helper=!tokctl git-credential", "credential", "fill")
		cmd.Env = gitEnv(e, "")
		cmd.Stdin = strings.NewReader("protocol=https\nhost=git.example.com\n\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git credential fill: %v", err)
		}
		attrs := gitAttrs(t, string(out))
		if !slices.Contains(attrs, demoUser) || !slices.Contains(attrs, demoPass) {
			t.Errorf("git credential fill = %q", out)
		}
	})

	t.Run("nothing", func(t *testing.T) {
		long := "protocol=https\nhost=git.example.com\nwwwauth[]=" + strings.Repeat("x", 1000) + "\n\n"
		for _, tc := range []struct{ in, action string }{
			{"protocol=https\nhost=git.example.com\n\n", "frobnicate"},
			{"protocol=https\nhost=git.example.com\nusername=oauth2\npassword=" + demo.AccessToken + "\n\n", "store"},
			{long, "store"},
			{"protocol=https\nhost=elsewhere.example.com\n\n", "get"},
			{"protocol=https\nhost=elsewhere.example.com\n\n", "erase"},
			// erase of a secret that is not tokd's token: another helper's
			// password, or a token tokd has already replaced.
			{"protocol=https\nhost=git.example.com\nusername=oauth2\npassword=someone-elses\n\n", "erase"},
			{"capability[]=authtype\nprotocol=https\nhost=git.example.com\nauthtype=Bearer\ncredential=an-old-token\n\n", "erase"},
			{"protocol=https\nhost=git.example.com:8443\n\n", "get"},
			{"protocol=http\nhost=git.example.com\n\n", "get"},
			{"protocol=https\nhost=git.test\npath=team/repo.git\n\n", "get"},
			{"protocol=ftp\nhost=git.example.com\n\n", "get"},
		} {
			stdout, stderr, code := gitHelper(t, e, tc.in, tc.action)
			if stdout != "" || code != 0 {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want nothing and 0", tc.action, tc.in, code, stdout, stderr)
			}
		}
		// store, unknown actions and erase of other secrets leave the token alone.
		if tok := gitTokctlGet(t, e); tok != demo.AccessToken {
			t.Error("the token changed")
		}
	})

	t.Run("errors", func(t *testing.T) {
		for name, in := range map[string]string{
			"no =":       "protocol=https\nhost git.example.com\n\n",
			"long line":  "protocol=https\nhost=git.example.com\nwwwauth[]=" + strings.Repeat("x", 70000) + "\n\n",
			"NUL":        "protocol=https\nhost=git.exa\x00mple.com\n\n",
			"no host":    "protocol=https\n\n",
			"bad url":    "url=git.example.com/repo.git\n\n",
			"empty":      "",
			"long first": strings.Repeat("y", 70000) + "=1\n",
		} {
			stdout, stderr, code := gitHelper(t, e, in, "get")
			if code != 1 || stdout != "" || stderr == "" {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1, nothing and a message", name, code, stdout, stderr)
			}
			if len(stderr) > 1000 {
				t.Errorf("%s: %d bytes of stderr", name, len(stderr))
			}
		}
		// Lines just within git's limit are fine.
		in := "protocol=https\nhost=git.example.com\nwwwauth[]=" + strings.Repeat("x", 65535-len("wwwauth[]=")) + "\n\n"
		if stdout, stderr, code := gitHelper(t, e, in, "get"); code != 0 || !strings.Contains(stdout, demo.AccessToken) {
			t.Errorf("a 65535-byte line: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if _, stderr, code := gitHelper(t, e, "", "get", "extra"); code != 2 {
			t.Errorf("two arguments: exit %d, stderr %q; want 2", code, stderr)
		}
	})

	t.Run("several profiles on one host", func(t *testing.T) {
		stdout, stderr, code := gitHelper(t, e, "protocol=http\nhost=git.test\n\n", "get")
		if code != 0 || stdout != "" {
			t.Errorf("get without a path: exit %d, stdout %q; want nothing and 0", code, stdout)
		}
		if !strings.Contains(stderr, "credential.useHttpPath") {
			t.Errorf("get without a path: stderr %q has no hint about credential.useHttpPath", stderr)
		}
		for _, tc := range []struct {
			in         string
			user, pass string
		}{
			{"protocol=http\nhost=git.test\npath=team/repo.git\n\n", "oauth2", demo.AccessToken},
			// http://git.test/team does not start with http://git.test/team/.
			{"protocol=http\nhost=git.test\npath=team\n\n", "x-other", otherTok},
			{"protocol=http\nhost=git.test\npath=teamwork/repo.git\n\n", "x-other", otherTok},
			{"protocol=http\nhost=git.test\npath=misc/repo.git\n\n", "x-other", otherTok},
			{"url=http://git.test/team/sub/repo.git\n\n", "oauth2", demo.AccessToken},
		} {
			stdout, stderr, code := gitHelper(t, e, tc.in, "get")
			if code != 0 {
				t.Errorf("get %q: exit %d, stderr %q", tc.in, code, stderr)
				continue
			}
			attrs := gitAttrs(t, stdout)
			if !slices.Contains(attrs, [2]string{"username", tc.user}) || !slices.Contains(attrs, [2]string{"password", tc.pass}) {
				t.Errorf("get %q answered %q, want user %s and its profile's token", tc.in, stdout, tc.user)
			}
		}
	})

	if n := e.Em.Stats().TokenRequests; n != 1 {
		t.Errorf("emulator saw %d token requests, want 1", n)
	}
}
