package main

// The credential helpers' decisions, run against a fake tokd that
// answers the socket API as the daemon does. The protocols end to end,
// with the real git, client-go and docker clients and the real tokd, are
// tested in cmd/ (git_test.go, kube_test.go, docker_test.go).

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
)

// fakeTokd serves tokd's socket API from handler and records the paths
// (with queries) it was asked for.
type fakeTokd struct {
	Socket string
	mu     sync.Mutex // guards asked
	asked  []string
}

func newFakeTokd(t *testing.T, handler http.HandlerFunc) *fakeTokd {
	t.Helper()
	dir, err := os.MkdirTemp("", "tc-") // t.TempDir can outgrow sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeTokd{Socket: filepath.Join(dir, "s")}
	l, err := net.Listen("unix", f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.asked = append(f.asked, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		w.Header().Set(apitype.VersionHeader, apitype.Version)
		handler(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

// Asked returns the requests served so far.
func (f *fakeTokd) Asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// gitCredentialOf serves cred for every git request.
func gitCredentialOf(cred apitype.Credential) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/git" || r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(apitype.ErrorResponse{Error: "not found"})
			return
		}
		json.NewEncoder(w).Encode(cred)
	}
}

// runHelper runs tokctl with args against socket, stdin as given, and
// returns stdout, stderr and the exit code.
func runHelper(socket, stdin string, args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	err := run(append([]string{"--socket", socket}, args...), strings.NewReader(stdin), &stdout, &stderr)
	code := exitCode(err, &stderr)
	return stdout.String(), stderr.String(), code
}

var demoCredential = apitype.Credential{
	Token: apitype.Token{Profile: "demo", AccessToken: "tok-demo", TokenType: "Bearer",
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
	Username:  "oauth2",
	ServerURL: "https://git.example.com/",
}

// TestGitCredentialOtherUser: git sends the username it already has (from
// the URL, as in https://alice@git.example.com/, or credential.username).
// A credential for another user is not the one it asks for: tokctl
// answers nothing, as git's own helpers do (credential_match), and git
// asks its next helper instead of sending the profile's token as alice.
func TestGitCredentialOtherUser(t *testing.T) {
	f := newFakeTokd(t, gitCredentialOf(demoCredential))
	for _, tt := range []struct {
		name, in string
		answer   bool
	}{
		{"no username", "protocol=https\nhost=git.example.com\n\n", true},
		{"the profile's username", "protocol=https\nhost=git.example.com\nusername=oauth2\n\n", true},
		{"another username", "protocol=https\nhost=git.example.com\nusername=alice\n\n", false},
		{"another username in url", "url=https://alice@git.example.com/team/repo.git\n\n", false},
		{"another username, authtype", "capability[]=authtype\nprotocol=https\nhost=git.example.com\nusername=alice\nwwwauth[]=Bearer\n\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runHelper(f.Socket, tt.in, "git-credential", "get")
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			if got := strings.Contains(stdout, "tok-demo"); got != tt.answer {
				t.Errorf("answer %q; want the token: %v", stdout, tt.answer)
			}
			if !tt.answer && (stdout != "" || stderr != "") {
				t.Errorf("stdout %q, stderr %q; want nothing", stdout, stderr)
			}
		})
	}
}

// TestGitCredentialOtherProtocols: git runs its helpers for more than
// HTTP: the password of a client certificate (protocol=cert, an empty
// host), git send-email's SMTP login (protocol=smtp). No profile can cover
// them (git.urls are http and https), so tokctl answers nothing, says
// nothing (git shows a helper's stderr) and does not ask tokd.
func TestGitCredentialOtherProtocols(t *testing.T) {
	f := newFakeTokd(t, gitCredentialOf(demoCredential))
	for _, in := range []string{
		"protocol=cert\nhost=\npath=/home/u/client.p12\n\n",
		"protocol=smtp\nhost=smtp.example.com:587\nusername=u@example.com\n\n",
		"url=cert:///home/u/client.p12\n\n",
	} {
		for _, action := range []string{"get", "erase"} {
			stdout, stderr, code := runHelper(f.Socket, in, "git-credential", action)
			if code != 0 || stdout != "" || stderr != "" {
				t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 0 and nothing", action, in, code, stdout, stderr)
			}
		}
	}
	if asked := f.Asked(); len(asked) != 0 {
		t.Errorf("tokd was asked %q", asked)
	}
}

// TestSubcommandHelp: -h or --help after a command asks for the usage, as
// it does before one: printed on stdout, exit 0, without asking tokd.
func TestSubcommandHelp(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock") // nothing listens
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"get", "-h"}, {"get", "demo", "--help"}, {"status", "-help"},
		{"refresh", "-h"}, {"exec", "-h"}, {"exec", "--env", "X", "--help"}, {"kubectl-credential", "-h"},
	} {
		stdout, stderr, code := runHelper(socket, "", args...)
		if code != 0 || stdout != usage || stderr != "" {
			t.Errorf("tokctl %q: exit %d, stdout %.30q..., stderr %q; want 0 and the usage on stdout", args, code, stdout, stderr)
		}
	}
	// After the profile, exec's arguments are the command's.
	if _, stderr, code := runHelper(socket, "", "exec", "demo", "--", "true", "-h"); code != exitUnreachable {
		t.Errorf("tokctl exec demo -- true -h: exit %d, stderr %q; want %d (the token asked for)", code, stderr, exitUnreachable)
	}
}

// TestDockerListHub: docker keys Docker Hub's credentials by
// https://index.docker.io/v1/ (what docker login stores, and the only key
// its ResolveAuthConfig takes for the official index), so list names Hub
// so, not by the docker.io that docker.registries use.
func TestDockerListHub(t *testing.T) {
	f := newFakeTokd(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(apitype.DockerList{"docker.io": "oauth2accesstoken", "registry.example.com": "u"})
	})
	stdout, stderr, code := runHelper(f.Socket, "", "docker-credential", "list")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("list printed %q: %v", stdout, err)
	}
	want := map[string]string{"https://index.docker.io/v1/": "oauth2accesstoken", "registry.example.com": "u"}
	if len(got) != len(want) || got["https://index.docker.io/v1/"] != want["https://index.docker.io/v1/"] || got["registry.example.com"] != "u" {
		t.Errorf("list = %v, want %v", got, want)
	}
}

// TestGitEraseOldAndNewDaemon: tokctl's erase sends the refused secret in
// one request, POST /v1/git/refused, for the daemon to compare. An older
// tokd answers that path with 404 "no such API path"; tokctl then falls
// back to asking for the token and forgetting it only when it is the
// refused one, so that a new tokctl never makes an old tokd drop a good
// token for another helper's password.
func TestGitEraseOldAndNewDaemon(t *testing.T) {
	oldDaemon := func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/git" && r.Method == http.MethodGet:
			json.NewEncoder(w).Encode(demoCredential)
		case r.URL.Path == "/v1/git" && r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(apitype.ErrorResponse{Error: "no such API path: " + r.Method + " " + r.URL.Path})
		}
	}
	var refusals []string
	var mu sync.Mutex
	newDaemon := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/git/refused" && r.Method == http.MethodPost {
			var body apitype.GitRefusal
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			mu.Lock()
			refusals = append(refusals, body.Refused)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		oldDaemon(w, r)
	}
	const url = "/v1/git?url=https%3A%2F%2Fgit.example.com%2F"
	const refusedURL = "/v1/git/refused?url=https%3A%2F%2Fgit.example.com%2F"
	for _, tt := range []struct {
		name    string
		daemon  http.HandlerFunc
		refused string
		want    []string
	}{
		{"new daemon, tokd's token", newDaemon, "tok-demo", []string{"POST " + refusedURL}},
		{"new daemon, another password", newDaemon, "someone-elses", []string{"POST " + refusedURL}},
		{"old daemon, tokd's token", oldDaemon, "tok-demo", []string{"POST " + refusedURL, "GET " + url, "DELETE " + url}},
		{"old daemon, another password", oldDaemon, "someone-elses", []string{"POST " + refusedURL, "GET " + url}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTokd(t, tt.daemon)
			in := "protocol=https\nhost=git.example.com\nusername=oauth2\npassword=" + tt.refused + "\n\n"
			stdout, stderr, code := runHelper(f.Socket, in, "git-credential", "erase")
			if code != 0 || stdout != "" || stderr != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and nothing", code, stdout, stderr)
			}
			if got := f.Asked(); !slices.Equal(got, tt.want) {
				t.Errorf("asked %q, want %q", got, tt.want)
			}
		})
	}
	if want := []string{"tok-demo", "someone-elses"}; !slices.Equal(refusals, want) {
		t.Errorf("the new daemon was told of refusals %q, want %q", refusals, want)
	}
}
