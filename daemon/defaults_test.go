package daemon_test

import (
	"os"
	"testing"

	"github.com/tokd/tokd/daemon"
)

// TestDefaults checks the socket and state directory used when neither
// the flags nor the configuration name one: systemd's directories first.
func TestDefaults(t *testing.T) {
	root := os.Getuid() == 0
	for _, tc := range []struct {
		name                string
		env                 map[string]string
		socket, stateDir    string
		onlyRoot, onlyUsers bool
	}{
		{
			name:     "systemd directories, first of each list",
			env:      map[string]string{"RUNTIME_DIRECTORY": "/run/tokd:/run/other", "STATE_DIRECTORY": "/var/lib/tokd:/var/lib/other"},
			socket:   "/run/tokd/tokd.sock",
			stateDir: "/var/lib/tokd",
		},
		{
			name:     "root outside systemd",
			env:      map[string]string{"XDG_RUNTIME_DIR": "/run/user/0", "XDG_STATE_HOME": "/root/.state"},
			socket:   "/run/tokd/tokd.sock",
			stateDir: "/var/lib/tokd",
			onlyRoot: true,
		},
		{
			name:      "user outside systemd",
			env:       map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_STATE_HOME": "/home/u/.state"},
			socket:    "/run/user/1000/tokd/tokd.sock",
			stateDir:  "/home/u/.state/tokd",
			onlyUsers: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.onlyRoot && !root) || (tc.onlyUsers && root) {
				t.Skipf("runs only as %s", map[bool]string{true: "root", false: "a user other than root"}[tc.onlyRoot])
			}
			for _, k := range []string{"RUNTIME_DIRECTORY", "STATE_DIRECTORY", "XDG_RUNTIME_DIR", "XDG_STATE_HOME"} {
				t.Setenv(k, tc.env[k])
			}
			if got := daemon.DefaultSocket(); got != tc.socket {
				t.Errorf("DefaultSocket() = %q, want %q", got, tc.socket)
			}
			if got := daemon.DefaultStateDir(); got != tc.stateDir {
				t.Errorf("DefaultStateDir() = %q, want %q", got, tc.stateDir)
			}
		})
	}
}
