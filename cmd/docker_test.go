package cmd_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dockerclient "github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/golang-jwt/jwt/v5"
)

// The docker credential helper, proven with docker's own code: the client
// package of docker-credential-helpers (what the docker CLI uses to run
// docker-credential-*) driving docker-credential-tokd, and, where the
// docker CLI is installed, `docker manifest inspect` against a registry
// that demands tokd's token, configured with the README's snippet.

// dockerUsername is the default docker.username.
const dockerUsername = "oauth2accesstoken"

// dockerTokctlGet returns the demo profile's token as `tokctl get` prints it.
func dockerTokctlGet(t *testing.T, e *tokdEnv) string {
	t.Helper()
	out, err := e.Command("tokctl", "get", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get demo: %v", err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// dockerHelperRun runs the helper binary named name (tokctl with args
// prefixed, or the docker-credential-tokd symlink) with stdin, returning
// stdout, stderr and the exit code.
func dockerHelperRun(t *testing.T, e *tokdEnv, stdin string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = e.Env
	cmd.Dir = e.Dir
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
	t.Fatalf("%s %v: %v", name, args, err)
	return "", "", 0
}

func TestDockerCredentialHelper(t *testing.T) {
	e := startTokd(t, "[profiles.demo.docker]\nregistries = [\"registry.example.com\", \"localhost:5000\"]\n")
	token := dockerTokctlGet(t, e)

	// As docker runs a helper, but by absolute path: the test process's
	// PATH does not hold binDir, and exec.Command looks the name up there.
	helper := dockerclient.NewShellProgramFuncWithEnv(filepath.Join(binDir, "docker-credential-tokd"),
		&map[string]string{"TOKD_SOCKET": e.Socket, "HOME": e.Dir})

	checkGet := func(server string) {
		t.Helper()
		creds, err := dockerclient.Get(helper, server)
		if err != nil {
			t.Errorf("Get(%q): %v", server, err)
			return
		}
		if creds.ServerURL != server || creds.Username != dockerUsername || creds.Secret != token {
			t.Errorf("Get(%q) = {ServerURL: %q, Username: %q, Secret: %.12q...}, want {%q, %q, tokctl get's token}",
				server, creds.ServerURL, creds.Username, creds.Secret, server, dockerUsername)
		}
	}
	for _, server := range []string{
		"registry.example.com",
		"https://registry.example.com/v2/",
		"https://registry.example.com",
		"REGISTRY.example.com",
		"localhost:5000",
		"http://localhost:5000/v2/",
	} {
		checkGet(server)
	}

	for _, server := range []string{
		"other.example.com",
		"registry.example.com:5000", // another port is another registry
		"localhost",
		"https://index.docker.io/v1/",
	} {
		creds, err := dockerclient.Get(helper, server)
		if !credentials.IsErrCredentialsNotFound(err) {
			t.Errorf("Get(%q) = %+v, %v; want credentials not found", server, creds, err)
		}
	}

	list, err := dockerclient.List(helper)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	wantList := map[string]string{"registry.example.com": dockerUsername, "localhost:5000": dockerUsername}
	if !maps.Equal(list, wantList) {
		t.Errorf("List = %v, want %v", list, wantList)
	}

	// docker login and logout: accepted, and nothing changes.
	if err := dockerclient.Store(helper, &credentials.Credentials{
		ServerURL: "registry.example.com", Username: "someone", Secret: "not-a-token",
	}); err != nil {
		t.Errorf("Store: %v", err)
	}
	if err := dockerclient.Erase(helper, "registry.example.com"); err != nil {
		t.Errorf("Erase: %v", err)
	}
	checkGet("registry.example.com")
	if got := dockerTokctlGet(t, e); got != token {
		t.Errorf("after store and erase tokctl get printed another token")
	}
	if got := e.Em.Stats().TokenRequests; got != 1 {
		t.Errorf("emulator saw %d token requests, want 1: erase must not drop the token", got)
	}
	list, err = dockerclient.List(helper)
	if err != nil || !maps.Equal(list, wantList) {
		t.Errorf("after store and erase List = %v, %v; want %v", list, err, wantList)
	}

	version := helper("version")
	version.Input(strings.NewReader(""))
	out, err := version.Output()
	if err != nil || !strings.Contains(string(out), "docker-credential-tokd") {
		t.Errorf("version: %q, %v", out, err)
	}

	// The symlink name is `tokctl docker-credential`, byte for byte.
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{"registry.example.com\n", []string{"get"}, 0},
		{"https://localhost:5000/v2/", []string{"get"}, 0},
		{"other.example.com\n", []string{"get"}, 1},
		{"", []string{"get"}, 1},
		{"unused", []string{"list"}, 0},
		{`{"ServerURL":"registry.example.com","Username":"u","Secret":"s"}`, []string{"store"}, 0},
		{"registry.example.com\n", []string{"erase"}, 0},
		{"", []string{"version"}, 0},
		{"", []string{"frobnicate"}, 2},
		{"", nil, 2},
		{"", []string{"get", "extra"}, 2},
	} {
		out1, err1, code1 := dockerHelperRun(t, e, tc.stdin, "docker-credential-tokd", tc.args...)
		out2, err2, code2 := dockerHelperRun(t, e, tc.stdin, "tokctl", append([]string{"docker-credential"}, tc.args...)...)
		if out1 != out2 || err1 != err2 || code1 != code2 {
			t.Errorf("%v: docker-credential-tokd gave (%q, %q, %d), tokctl docker-credential (%q, %q, %d)",
				tc.args, out1, err1, code1, out2, err2, code2)
		}
		if code1 != tc.code {
			t.Errorf("docker-credential-tokd %v < %q exited %d, want %d; stderr %q", tc.args, tc.stdin, code1, tc.code, err1)
		}
		if tc.code == 0 && tc.args[0] == "get" {
			var c credentials.Credentials
			if err := json.Unmarshal([]byte(out1), &c); err != nil || c.Secret != token || c.Username != dockerUsername {
				t.Errorf("get < %q printed %q (%v)", tc.stdin, out1, err)
			}
		}
	}
	// docker matches the not-found answer on stdout.
	if out, _, _ := dockerHelperRun(t, e, "other.example.com", "docker-credential-tokd", "get"); !credentials.IsErrCredentialsNotFoundMessage(out) {
		t.Errorf("get for an unknown registry printed %q on stdout, want %q", out, credentials.NewErrCredentialsNotFound())
	}
}

// dockerRegistry is a registry serving one image, img:tag, to clients
// that authenticate with Basic auth: user oauth2accesstoken and, as
// password, an access token the emulator signed.
type dockerRegistry struct {
	key      *rsa.PublicKey // set before the first request
	manifest []byte
	config   []byte

	mu       sync.Mutex
	accepted []string // passwords of admitted requests
	refused  []string // what requests with bad credentials sent
	anon     int      // requests without credentials
	requests []string // "METHOD PATH (admitted: BOOL)"
}

const dockerManifestType = "application/vnd.docker.distribution.manifest.v2+json"

func dockerDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func newDockerRegistry() *dockerRegistry {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` +
		strings.Repeat("0", 64) + `"]},"config":{}}`)
	layer := []byte("not really a tarball")
	manifest, err := json.MarshalIndent(map[string]any{
		"schemaVersion": 2,
		"mediaType":     dockerManifestType,
		"config": map[string]any{
			"mediaType": "application/vnd.docker.container.image.v1+json",
			"size":      len(config),
			"digest":    dockerDigest(config),
		},
		"layers": []map[string]any{{
			"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
			"size":      len(layer),
			"digest":    dockerDigest(layer),
		}},
	}, "", "   ")
	if err != nil {
		panic(err)
	}
	return &dockerRegistry{manifest: manifest, config: config}
}

func (s *dockerRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ok := s.admit(r)
	s.mu.Lock()
	s.requests = append(s.requests, fmt.Sprintf("%s %s (admitted: %t)", r.Method, r.URL.Path, ok))
	s.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokd-test"`)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case r.URL.Path == "/v2/":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{}")
	case r.URL.Path == "/v2/img/manifests/tag", r.URL.Path == "/v2/img/manifests/"+dockerDigest(s.manifest):
		w.Header().Set("Content-Type", dockerManifestType)
		w.Header().Set("Docker-Content-Digest", dockerDigest(s.manifest))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.manifest))
	case r.URL.Path == "/v2/img/blobs/"+dockerDigest(s.config):
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", dockerDigest(s.config))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.config))
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not found"}]}`)
	}
}

// admit reports whether r carries the credentials tokd hands out.
func (s *dockerRegistry) admit(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.anon++
		return false
	}
	_, err := jwt.Parse(pass, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired())
	if user != dockerUsername || err != nil {
		// Described, not recorded: test logs hold no tokens.
		s.refused = append(s.refused, fmt.Sprintf("user %q, password of %d bytes (%v)", user, len(pass), err))
		return false
	}
	s.accepted = append(s.accepted, pass)
	return true
}

func TestDockerManifestInspect(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed: skipping docker manifest inspect")
	}
	reg := newDockerRegistry()
	srv := httptest.NewUnstartedServer(reg)
	srv.Start() // the registry's port must be known before tokd's configuration
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String() // 127.0.0.1:PORT

	e := startTokd(t, fmt.Sprintf("[profiles.demo.docker]\nregistries = [%q]\n", host))
	reg.mu.Lock()
	reg.key = e.Em.PublicKey()
	reg.mu.Unlock()

	// The README's snippet, naming this registry.
	snippet := readmeBlock(t, "### docker")
	if !strings.Contains(snippet, `"registry.example.com"`) {
		t.Fatalf("README's docker block names no registry.example.com:\n%s", snippet)
	}
	configJSON := strings.ReplaceAll(snippet, "registry.example.com", host)
	var parsed struct {
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if err := json.Unmarshal([]byte(configJSON), &parsed); err != nil || parsed.CredHelpers[host] != "tokd" {
		t.Fatalf("README's docker block is not a config.json with credHelpers: %v\n%s", err, snippet)
	}
	dockerConfig := filepath.Join(e.Dir, ".docker")
	if err := os.MkdirAll(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(configJSON), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "manifest", "inspect", "--insecure", host+"/img:tag")
	cmd.Env = append(e.Env, "DOCKER_CONFIG="+dockerConfig, "DOCKER_CLI_HINTS=false")
	cmd.Dir = e.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()

	reg.mu.Lock()
	accepted, refused, anon, requests := reg.accepted, reg.refused, reg.anon, reg.requests
	reg.mu.Unlock()
	if err != nil {
		t.Fatalf("docker manifest inspect: %v\nstdout:\n%s\nstderr:\n%s\nregistry saw %v (%d without credentials, refused %q)",
			err, &stdout, &stderr, requests, anon, refused)
	}

	var got, want any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("docker manifest inspect printed no JSON: %v\n%s", err, &stdout)
	}
	if err := json.Unmarshal(reg.manifest, &want); err != nil {
		t.Fatal(err)
	}
	if gotJSON, wantJSON := dockerJSON(t, got), dockerJSON(t, want); gotJSON != wantJSON {
		t.Errorf("docker manifest inspect printed\n%s\nwant the registry's manifest\n%s", &stdout, reg.manifest)
	}

	token := dockerTokctlGet(t, e)
	// docker asks anonymously first, learns the Basic challenge from the
	// 401, and then sends tokd's credentials.
	if anon == 0 {
		t.Errorf("docker never met the 401 challenge; the registry saw %v", requests)
	}
	if len(accepted) == 0 {
		t.Errorf("the registry admitted no request; saw %v", requests)
	}
	for _, pass := range accepted {
		if pass != token {
			t.Errorf("the registry was sent a token other than tokctl get's")
		}
	}
	if len(refused) != 0 {
		t.Errorf("the registry refused %d requests with credentials: %q", len(refused), refused)
	}
	if got := e.Em.Stats().TokenRequests; got != 1 {
		t.Errorf("emulator saw %d token requests, want 1", got)
	}
	t.Logf("registry saw %v", requests)
}

func dockerJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
