package config

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the config package light: tokctl may link it, and
// it must not pull in an HTTP stack or the daemon's storage.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/tokd/tokd/config" {
			continue
		}
		for _, banned := range []string{"net/http", "go.etcd.io/bbolt", "github.com/tokd/tokd/"} {
			if dep == banned || strings.HasPrefix(dep, banned) {
				t.Errorf("config depends on %s", dep)
			}
		}
	}
}
