package cmd_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestExec runs the README's "any program" snippet: curl, through tokctl
// exec, sends tokd's token to a server that checks it.
func TestExec(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (Debian package curl)")
	}
	e := startTokd(t, "")
	want := tokctlGet(t, e)

	var mu sync.Mutex
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+want {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("hello from the API\n"))
	}))
	defer api.Close()

	snippet := strings.TrimSpace(readmeBlock(t, "### any program"))
	for _, r := range [][2]string{{"tokctl exec ci ", "tokctl exec demo "}, {"https://api.example.com/", api.URL + "/"}} {
		if !strings.Contains(snippet, r[0]) {
			t.Fatalf("README's snippet %q lacks %q", snippet, r[0])
		}
		snippet = strings.Replace(snippet, r[0], r[1], 1)
	}
	out, err := e.Command("sh", "-c", snippet).CombinedOutput()
	if err != nil || string(out) != "hello from the API\n" {
		t.Fatalf("%s: %v\n%s", snippet, err, out)
	}
	mu.Lock()
	if len(seen) != 1 || seen[0] != "Bearer "+want {
		t.Errorf("the API saw %d requests, want one with tokd's token", len(seen))
	}
	mu.Unlock()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "default variable", args: []string{"exec", "demo", "--", "sh", "-c", `printf %s "$TOKD_ACCESS_TOKEN"`}, wantOut: want},
		{name: "--env renames it", args: []string{"exec", "--env", "API_TOKEN", "demo", "--", "sh", "-c", `printf %s "$API_TOKEN"`}, wantOut: want},
		{name: "without --", args: []string{"exec", "demo", "printenv", "TOKD_ACCESS_TOKEN"}, wantOut: want + "\n"},
		{name: "the command's exit status", args: []string{"exec", "demo", "--", "sh", "-c", "exit 7"}, wantCode: 7},
		{name: "unknown profile", args: []string{"exec", "nope", "--", "true"}, wantCode: 1},
		{name: "no command", args: []string{"exec", "demo", "--"}, wantCode: 2},
		{name: "command not found", args: []string{"exec", "demo", "--", "no-such-command-tokd"}, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := e.Command("tokctl", tt.args...).Output()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d", code, tt.wantCode)
			}
			if tt.wantCode == 0 && string(out) != tt.wantOut {
				t.Errorf("output %q is not the token", out)
			}
		})
	}
}

// tokctlGet returns the token tokctl get demo prints.
func tokctlGet(t *testing.T, e *tokdEnv) string {
	t.Helper()
	out, err := e.Command("tokctl", "get", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get demo: %v", err)
	}
	return strings.TrimSuffix(string(out), "\n")
}
