package cmd_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientauthv1beta1 "k8s.io/client-go/pkg/apis/clientauthentication/v1beta1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	kubeV1      = "client.authentication.k8s.io/v1"
	kubeV1beta1 = "client.authentication.k8s.io/v1beta1"
	// podsPath is what the tests ask the fake API server for.
	podsPath = "/api/v1/namespaces/default/pods"
)

// fakeAPIServer stands for a Kubernetes API server that accepts only
// bearer tokens the emulator signed.
type fakeAPIServer struct {
	*httptest.Server
	t *testing.T
	e *tokdEnv

	mu       sync.Mutex
	requests int      // every request
	tokens   []string // the bearer token of each request, "" for none
}

func newFakeAPIServer(t *testing.T, e *tokdEnv) *fakeAPIServer {
	s := &fakeAPIServer{t: t, e: e}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *fakeAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.requests++
	s.tokens = append(s.tokens, tok)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok || !s.valid(tok) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != podsPath {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}`)
		return
	}
	io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
}

// valid reports whether tok is an unexpired access token that the
// emulator signed.
func (s *fakeAPIServer) valid(tok string) bool {
	_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return s.e.Em.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired())
	if err != nil {
		s.t.Logf("fake API server: rejecting token: %v", err)
	}
	return err == nil
}

// seen returns the number of requests and the tokens they carried.
func (s *fakeAPIServer) seen() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, slices.Clone(s.tokens)
}

// caPEM is the PEM of the server's self-signed certificate.
func (s *fakeAPIServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// countingPlugin writes an executable named tokctl into a new directory:
// it records each run (the KUBERNETES_EXEC_INFO it got, on one line) in the
// returned log file and then runs the real tokctl.
func countingPlugin(t *testing.T) (path, log string) {
	dir := t.TempDir()
	path = filepath.Join(dir, "tokctl")
	log = filepath.Join(dir, "runs.log")
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "$(printf '%%s' "${KUBERNETES_EXEC_INFO:-absent}" | tr -d '\n')" >> '%s'
exec '%s' "$@"
`, log, filepath.Join(binDir, "tokctl"))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

// pluginRuns returns the KUBERNETES_EXEC_INFO of each run of the plugin.
func pluginRuns(t *testing.T, log string) []string {
	data, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// readmeKubeconfig returns a complete kubeconfig around the README's
// kubectl snippet: its user, with apiVersion set to apiVersion, the demo
// profile and the given command, in a context whose cluster is server.
func readmeKubeconfig(t *testing.T, apiVersion, command, server string, clusterExtra string) []byte {
	t.Helper()
	snippet := readmeBlock(t, "### kubectl")
	for _, r := range []struct{ old, new string }{
		{"apiVersion: " + kubeV1 + "\n", "apiVersion: " + apiVersion + "\n"},
		{"command: tokctl\n", "command: " + command + "\n"},
		{`"kubectl-credential", "ci"`, `"kubectl-credential", "demo"`},
	} {
		if !strings.Contains(snippet, r.old) {
			t.Fatalf("README's kubectl snippet has no %q; update this test with it:\n%s", r.old, snippet)
		}
		snippet = strings.ReplaceAll(snippet, r.old, r.new)
	}
	// The snippet alone must be a valid kubeconfig fragment with one user.
	frag, err := clientcmd.Load([]byte(snippet))
	if err != nil {
		t.Fatalf("README's kubectl snippet does not load: %v\n%s", err, snippet)
	}
	if len(frag.AuthInfos) != 1 {
		t.Fatalf("README's kubectl snippet has %d users, want 1:\n%s", len(frag.AuthInfos), snippet)
	}
	var user string
	for name := range frag.AuthInfos {
		user = name
	}
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
%scontexts:
- name: test
  context:
    cluster: test
    user: %s
current-context: test
%s`, server, clusterExtra, user, snippet)
}

// TestKubectlExecPlugin runs client-go's exec authenticator, configured
// by the README's kubeconfig snippet, against a TLS API server that
// demands the emulator's token; and checks the ExecCredential tokctl
// prints.
func TestKubectlExecPlugin(t *testing.T) {
	e := startTokd(t, "")
	out, err := e.Command("tokctl", "get", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get demo: %v", err)
	}
	want := strings.TrimSpace(string(out))
	api := newFakeAPIServer(t, e)

	// The API server must demand the token: none, or a forged one, is 401.
	for _, auth := range []string{"", "Bearer " + want[:len(want)-8] + "AAAAAAAA"} {
		req, _ := http.NewRequest(http.MethodGet, api.URL+podsPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("fake API server answered %s to Authorization %.30q, want 401", resp.Status, auth)
		}
	}

	for _, apiVersion := range []string{kubeV1, kubeV1beta1} {
		t.Run("client-go/"+apiVersion[strings.LastIndex(apiVersion, "/")+1:], func(t *testing.T) {
			plugin, log := countingPlugin(t)
			caData := base64.StdEncoding.EncodeToString(api.caPEM())
			kubeconfig := readmeKubeconfig(t, apiVersion, plugin, api.URL,
				"    certificate-authority-data: "+caData+"\n")
			cfg := loadRESTConfig(t, kubeconfig)
			if cfg.ExecProvider == nil {
				t.Fatalf("the README's kubeconfig has no exec provider")
			}
			if got := cfg.ExecProvider.APIVersion; got != apiVersion {
				t.Errorf("exec apiVersion = %q, want %q", got, apiVersion)
			}
			if got := cfg.ExecProvider.InteractiveMode; got != "Never" {
				t.Errorf("exec interactiveMode = %q, want Never", got)
			}
			if got, want := cfg.ExecProvider.Args, []string{"kubectl-credential", "demo"}; !slices.Equal(got, want) {
				t.Errorf("exec args = %q, want %q", got, want)
			}
			// client-go runs the plugin with its own environment plus these.
			cfg.ExecProvider.Env = append(cfg.ExecProvider.Env,
				clientcmdapi.ExecEnvVar{Name: "TOKD_SOCKET", Value: e.Socket},
				clientcmdapi.ExecEnvVar{Name: "HOME", Value: e.Dir})

			hc, err := rest.HTTPClientFor(cfg)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := api.seen()
			for i := range 3 {
				resp, err := hc.Get(api.URL + podsPath)
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"PodList"`)) {
					t.Errorf("request %d: %s %s", i+1, resp.Status, body)
				}
			}
			n, tokens := api.seen()
			if n-before != 3 {
				t.Errorf("API server saw %d requests, want 3", n-before)
			}
			for i, tok := range tokens[before:] {
				if tok != want {
					t.Errorf("request %d carried token %.20q..., want tokd's %.20q...", i+1, tok, want)
				}
			}
			runs := pluginRuns(t, log)
			if len(runs) != 1 {
				t.Errorf("the plugin ran %d times for 3 requests, want once (cached until expirationTimestamp)", len(runs))
			}
			for _, info := range runs {
				var got struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				if err := json.Unmarshal([]byte(info), &got); err != nil || got.APIVersion != apiVersion || got.Kind != "ExecCredential" {
					t.Errorf("KUBERNETES_EXEC_INFO = %s, want an ExecCredential of %s", info, apiVersion)
				}
			}
		})
	}

	t.Run("credential", func(t *testing.T) {
		var tok struct {
			AccessToken string    `json:"access_token"`
			ExpiresAt   time.Time `json:"expires_at"`
		}
		out, err := e.Command("tokctl", "get", "--json", "demo").Output()
		if err != nil {
			t.Fatalf("tokctl get --json demo: %v", err)
		}
		if err := json.Unmarshal(out, &tok); err != nil {
			t.Fatalf("tokctl get --json demo printed %s: %v", out, err)
		}
		if tok.AccessToken != want || tok.ExpiresAt.IsZero() {
			t.Fatalf("tokctl get --json demo = %s, want token %.20q...", out, want)
		}
		// RFC 3339 in seconds: the fraction is cut, which errs early.
		wantExp := tok.ExpiresAt.Add(-30 * time.Second).Truncate(time.Second)

		for _, tt := range []struct {
			name, execInfo, apiVersion string
		}{
			{"v1", `{"kind":"ExecCredential","apiVersion":"` + kubeV1 + `","spec":{"interactive":false}}`, kubeV1},
			{"v1beta1", `{"kind":"ExecCredential","apiVersion":"` + kubeV1beta1 + `","spec":{"interactive":false}}`, kubeV1beta1},
			{"absent", "", kubeV1},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cmd := e.Command("tokctl", "kubectl-credential", "demo")
				if tt.execInfo != "" {
					cmd.Env = append(cmd.Env, "KUBERNETES_EXEC_INFO="+tt.execInfo)
				}
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("tokctl kubectl-credential demo: %v\n%s", err, stderr.Bytes())
				}
				var head struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				if err := json.Unmarshal(out, &head); err != nil {
					t.Fatalf("output %s: %v", out, err)
				}
				if head.APIVersion != tt.apiVersion || head.Kind != "ExecCredential" {
					t.Errorf("apiVersion, kind = %q, %q, want %q, ExecCredential", head.APIVersion, head.Kind, tt.apiVersion)
				}
				// Decode strictly into client-go's own type of that version.
				var token string
				var exp time.Time
				dec := json.NewDecoder(bytes.NewReader(out))
				dec.DisallowUnknownFields()
				switch head.APIVersion {
				case kubeV1:
					var cred clientauthv1.ExecCredential
					err = dec.Decode(&cred)
					if cred.Status != nil {
						token = cred.Status.Token
						if cred.Status.ExpirationTimestamp != nil {
							exp = cred.Status.ExpirationTimestamp.Time
						}
					}
				case kubeV1beta1:
					var cred clientauthv1beta1.ExecCredential
					err = dec.Decode(&cred)
					if cred.Status != nil {
						token = cred.Status.Token
						if cred.Status.ExpirationTimestamp != nil {
							exp = cred.Status.ExpirationTimestamp.Time
						}
					}
				}
				if err != nil {
					t.Fatalf("output %s: %v", out, err)
				}
				if token != want {
					t.Errorf("status.token = %.20q..., want tokd's %.20q...", token, want)
				}
				if !exp.Equal(wantExp) {
					t.Errorf("status.expirationTimestamp = %v, want %v (30 s before expires_at %v)",
						exp.UTC(), wantExp.UTC(), tok.ExpiresAt)
				}
			})
		}

		for _, tt := range []struct{ name, execInfo, msg string }{
			{"unknown", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v2","spec":{}}`, "client.authentication.k8s.io/v2"},
			{"alpha", `{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","spec":{}}`, "v1alpha1"},
			{"not-json", `apiVersion: v1`, "KUBERNETES_EXEC_INFO"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cmd := e.Command("tokctl", "kubectl-credential", "demo")
				cmd.Env = append(cmd.Env, "KUBERNETES_EXEC_INFO="+tt.execInfo)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if _, ok := err.(*exec.ExitError); !ok {
					t.Fatalf("tokctl kubectl-credential with apiVersion of %s: err = %v, want a non-zero exit", tt.execInfo, err)
				}
				if stdout.Len() != 0 {
					t.Errorf("stdout = %q, want nothing", stdout.Bytes())
				}
				if !strings.Contains(stderr.String(), tt.msg) {
					t.Errorf("stderr = %q, want a message naming %q", stderr.Bytes(), tt.msg)
				}
			})
		}
	})

	// The real kubectl, where one is installed, with the README snippet in
	// v1beta1, the only version Debian's kubectl 1.20 speaks. kubectl runs
	// the plugin once per command. TOKD_TEST_KUBECTL names another binary.
	t.Run("kubectl", func(t *testing.T) {
		kubectl := os.Getenv("TOKD_TEST_KUBECTL")
		if kubectl == "" {
			var err error
			if kubectl, err = exec.LookPath("kubectl"); err != nil {
				t.Skip("no kubectl on PATH (Debian: apt-get install kubernetes-client)")
			}
		}
		if out, err := exec.Command(kubectl, "version", "--client").CombinedOutput(); err == nil {
			t.Logf("%s: %s", kubectl, bytes.TrimSpace(out))
		}
		plugin, log := countingPlugin(t)
		kubeconfig := readmeKubeconfig(t, kubeV1beta1, plugin, api.URL, "    insecure-skip-tls-verify: true\n")
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
		before, _ := api.seen()
		const commands = 2
		for i := range commands {
			cmd := e.Command(kubectl, "--kubeconfig", path, "get", "--raw", podsPath)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl get --raw %s: %v\n%s", podsPath, err, out)
			}
			if !bytes.Contains(out, []byte(`"PodList"`)) {
				t.Errorf("kubectl command %d printed %s", i+1, out)
			}
		}
		n, tokens := api.seen()
		if n-before < commands {
			t.Errorf("API server saw %d requests, want at least %d", n-before, commands)
		}
		for i, tok := range tokens[before:] {
			if tok != want {
				t.Errorf("request %d carried token %.20q..., want tokd's %.20q...", i+1, tok, want)
			}
		}
		if runs := pluginRuns(t, log); len(runs) != commands {
			t.Errorf("the plugin ran %d times for %d kubectl commands, want once each", len(runs), commands)
		}
	})
}

// loadRESTConfig loads a kubeconfig the way kubectl does.
func loadRESTConfig(t *testing.T, kubeconfig []byte) *rest.Config {
	t.Helper()
	c, err := clientcmd.Load(kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig does not load: %v\n%s", err, kubeconfig)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*c, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v\n%s", err, kubeconfig)
	}
	return cfg
}
