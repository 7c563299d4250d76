package cmd_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestDevMode runs README's first command as a newcomer would (the built
// binary stands in for go run): tokd --dev prints where its socket is and
// what to try, tokctl gets the demo token there, and Ctrl-C removes
// everything it made, except a --state-dir the user chose.
func TestDevMode(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ownFlags bool // --socket and --state-dir given
	}{{"defaults", false}, {"--socket and --state-dir", true}} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifyListener(t)
			args := []string{"--dev"}
			var sock, state string
			if tt.ownFlags {
				sock = filepath.Join(filepath.Dir(n.path), "dev.sock")
				state = filepath.Join(t.TempDir(), "state")
				args = append(args, "--socket", sock, "--state-dir", state)
			}
			cmd := exec.Command(filepath.Join(binDir, "tokd"), args...)
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.path)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()

			n.waitFor(t, "READY=1")
			banner := readUntil(t, stdout, "Ctrl-C stops tokd")
			printed := regexp.MustCompile(`(?m)^  socket: +(\S+)$`).FindStringSubmatch(banner)
			if printed == nil {
				t.Fatalf("no socket in the banner:\n%s", banner)
			}
			if tt.ownFlags && printed[1] != sock {
				t.Errorf("banner names socket %s, want --socket %s", printed[1], sock)
			}
			for _, want := range []string{"export TOKD_SOCKET=" + printed[1], "tokctl get demo", "tokctl status", "git-credential get", "kubectl-credential demo"} {
				if !strings.Contains(banner, want) {
					t.Errorf("banner lacks %q:\n%s", want, banner)
				}
			}
			tmp := regexp.MustCompile(`removes (\S+)\.`).FindStringSubmatch(banner)
			if tmp == nil {
				t.Fatalf("banner does not say what Ctrl-C removes:\n%s", banner)
			}

			get := exec.Command(filepath.Join(binDir, "tokctl"), "get", "demo")
			get.Env = append(os.Environ(), "TOKD_SOCKET="+printed[1])
			out, err := get.CombinedOutput()
			if err != nil || !regexp.MustCompile(`^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$`).Match(out) {
				t.Fatalf("tokctl get demo: %v\n%s\ntokd: %s", err, out, stderr.String())
			}

			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("tokd --dev after Ctrl-C: %v\n%s", err, stderr.String())
			}
			if _, err := os.Stat(tmp[1]); !os.IsNotExist(err) {
				t.Errorf("%s is still there after Ctrl-C (%v)", tmp[1], err)
			}
			if _, err := os.Stat(printed[1]); !os.IsNotExist(err) {
				t.Errorf("the socket %s is still there after Ctrl-C (%v)", printed[1], err)
			}
			if tt.ownFlags {
				if _, err := os.Stat(filepath.Join(state, "tokd.db")); err != nil {
					t.Errorf("the --state-dir store is gone: %v", err)
				}
			}
		})
	}
}

// readUntil reads r line by line up to and including the first line
// containing marker.
func readUntil(t *testing.T, r io.Reader, marker string) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), marker) {
			return b.String()
		}
	}
	t.Fatalf("output ended before %q:\n%s", marker, b.String())
	return ""
}
