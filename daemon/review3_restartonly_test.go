package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokd/tokd/daemon"
)

// TestReloadWarnsOfSettingsItCannotApply shows that a reload that changes
// a setting tokd reads only at start (socket, state_dir, metrics_address,
// start_jitter) says so in a warning naming the key, rather than leaving
// the operator to believe it took effect: the socket and the state
// directory changed without a word. A setting that a flag overrides
// (--socket, --state-dir) is not the configuration's to change, and draws
// no warning.
func TestReloadWarnsOfSettingsItCannotApply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags bool // the socket and the state directory come from flags
		warn  []string
		quiet []string
	}{
		{name: "from the configuration", warn: []string{"socket", "state_dir", "metrics_address", "start_jitter"}},
		{name: "overridden by flags", flags: true, warn: []string{"metrics_address", "start_jitter"}, quiet: []string{"socket", "state_dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			top := func(socket, stateDir, metrics, jitter string) string {
				return fmt.Sprintf("socket = %q\nstate_dir = %q\nmetrics_address = %q\nstart_jitter = %q\n", socket, stateDir, metrics, jitter)
			}
			otherSocket := filepath.Join(filepath.Dir(e.socket), "other.sock")
			otherState := filepath.Join(t.TempDir(), "other-state")
			e.writeConfig(top(e.socket, e.stateDir, "", "0s"), e.jwtProfile("a"))
			cfg, err := e.loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			opts := e.baseOptions(cfg)
			if !tc.flags {
				opts.Socket, opts.StateDir = "", ""
			}
			hangup := make(chan os.Signal)
			opts.Hangup = hangup
			ready := make(chan string, 1)
			opts.Ready = func(socket string) { ready <- socket }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- daemon.Run(ctx, opts) }()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("daemon.Run: %v", err)
					}
				case <-time.After(waitTimeout):
					t.Errorf("daemon.Run did not return after %v", waitTimeout)
				}
			})
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("daemon.Run returned before it was ready: %v", err)
			case <-time.After(waitTimeout):
				t.Fatalf("daemon not ready after %v", waitTimeout)
			}

			e.writeConfig(top(otherSocket, otherState, freeLoopbackAddr(t), "1m"), e.jwtProfile("a"))
			from := e.logs.Len()
			select {
			case hangup <- syscall.SIGHUP:
			case <-time.After(waitTimeout):
				t.Fatal("the daemon did not take the SIGHUP")
			}
			if line := e.logs.waitFor(t, from, "configuration reloaded", "reload refused"); !strings.Contains(line, "reloaded") {
				t.Fatalf("reload: %s", line)
			}
			logs := e.logs.String()[from:]
			warned := func(key string) bool {
				for _, line := range strings.Split(logs, "\n") {
					if strings.Contains(line, "level=WARN") && strings.Contains(line, key+" changed") {
						return true
					}
				}
				return false
			}
			for _, key := range tc.warn {
				if !warned(key) {
					t.Errorf("no warning that %s changed and takes effect at the next restart; logs of the reload:\n%s", key, logs)
				}
			}
			for _, key := range tc.quiet {
				if warned(key) {
					t.Errorf("a warning that %s changed, which a flag overrides; logs of the reload:\n%s", key, logs)
				}
			}
			if _, err := os.Lstat(otherSocket); err == nil {
				t.Errorf("the reload created %s", otherSocket)
			}
		})
	}
}
