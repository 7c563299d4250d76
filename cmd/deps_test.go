// Package cmd_test guards what the binaries link. Go runs every linked
// package's init at start, and tokctl starts on every git, kubectl and
// docker call, so what it may link is part of the product; test-only
// modules must never reach either binary.
package cmd_test

import (
	"os/exec"
	"strings"
	"testing"
)

// testOnly are modules and packages that only tests may use.
var testOnly = []string{
	"github.com/ory/",
	"github.com/go-jose/",
	"github.com/google/go-cmp/",
	"github.com/rogpeppe/go-internal/",
	"k8s.io/",
	"github.com/docker/docker-credential-helpers/",
	"testing",
	"net/http/httptest",
}

func TestDeps(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{pkg: "./tokd", forbidden: testOnly},
		{pkg: "./tokctl", forbidden: append([]string{
			// tokctl is one blocking round trip over a Unix socket.
			"net", "net/http", "crypto/tls", "crypto/x509",
			// Each of these costs every tokctl process start-up time and
			// page faults, used or not (docs/BENCHMARKS.md, section 1);
			// tokctl has small replacements, tested against them.
			"encoding/json", "fmt", "flag", "net/url", "os/exec", "reflect",
			"go.etcd.io/bbolt", "github.com/prometheus/", "github.com/BurntSushi/toml",
			"github.com/golang-jwt/", "log/slog",
			"github.com/tokd/tokd/config", "github.com/tokd/tokd/daemon",
			"github.com/tokd/tokd/cache", "github.com/tokd/tokd/store",
			"github.com/tokd/tokd/oauth", "github.com/tokd/tokd/emulator",
		}, testOnly...)},
		// The arrows of the house style: cmd -> daemon -> cache -> store;
		// neither cache nor store (nor config) makes HTTP requests.
		{pkg: "../cache", forbidden: []string{"net/http", "go.etcd.io/bbolt",
			"github.com/tokd/tokd/daemon", "github.com/tokd/tokd/oauth"}},
		{pkg: "../store", forbidden: []string{"net/http", "github.com/tokd/tokd/daemon", "github.com/tokd/tokd/cache"}},
		{pkg: "../config", forbidden: []string{"net/http"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", tt.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tt.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("go list -deps %s listed only %v", tt.pkg, deps)
			}
			for _, dep := range deps {
				for _, bad := range tt.forbidden {
					if forbids(bad, dep) {
						t.Errorf("%s links %s", tt.pkg, dep)
					}
				}
			}
		})
	}
}

// forbids reports whether the forbidden entry bad matches the package dep.
// An entry ending in "/" is a prefix; a module path forbids its whole
// tree; a standard-library package forbids only itself, since net/url
// and net/netip are cheap where net and net/http are not.
func forbids(bad, dep string) bool {
	switch {
	case strings.HasSuffix(bad, "/"):
		return strings.HasPrefix(dep, bad)
	case strings.Contains(bad, "."):
		return dep == bad || strings.HasPrefix(dep, bad+"/")
	default:
		return dep == bad
	}
}
