// Package systemd_test checks tokd's unit files: with systemd's own
// parser (systemd-analyze verify and security), and against the paths and
// modes the daemon and tokctl use.
package systemd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/daemon"
)

// unitSet is one set of units that systemd loads together.
type unitSet struct {
	name  string
	user  bool     // per-user units (systemd --user)
	files []string // relative to this directory
}

var unitSets = []unitSet{
	{name: "system", files: []string{"tokd.service", "tokd.socket"}},
	{name: "user", user: true, files: []string{"user/tokd.service", "user/tokd.socket"}},
}

// packagedTokd is where the packages install tokd, as ExecStart names it.
const packagedTokd = "/usr/bin/tokd"

// TestVerify runs systemd-analyze verify on the units, with ExecStart
// pointing at a tokd built from this tree, since verify insists that the
// executable exists.
func TestVerify(t *testing.T) {
	analyze := lookPath(t, "systemd-analyze")
	tokd := buildTokd(t)
	for _, set := range unitSets {
		t.Run(set.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, f := range set.files {
				data := readFile(t, f)
				if strings.HasSuffix(f, ".service") {
					data = replaceExecStart(t, f, data, tokd)
				}
				paths = append(paths, writeUnit(t, dir, filepath.Base(f), data))
			}
			if problems := verify(t, analyze, set.user, paths...); len(problems) > 0 {
				t.Errorf("systemd-analyze verify:\n%s", strings.Join(problems, "\n"))
			}
		})
	}
}

// TestVerifyCatchesBrokenUnits proves that verify runs and that its
// complaints reach the test: systemd-analyze exits 0 on unknown keys and
// unparsable values, so verify must read its output too.
func TestVerifyCatchesBrokenUnits(t *testing.T) {
	analyze := lookPath(t, "systemd-analyze")
	tokd := buildTokd(t)
	good := replaceExecStart(t, "tokd.service", readFile(t, "tokd.service"), tokd)
	tests := []struct {
		name string
		unit string
	}{
		{"missing executable", "[Service]\nExecStart=/nonexistent/tokd\n"},
		{"unknown key", "[Service]\nExecStart=" + tokd + "\nProtectSystm=strict\n"},
		{"bad service type", "[Service]\nType=notifyy\nExecStart=" + tokd + "\n"},
		{"bad value in the real unit", strings.Replace(good, "ProtectSystem=strict", "ProtectSystem=strikt", 1)},
		{"unknown section in the real unit", good + "\n[Servce]\nUser=tokd\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.unit == good {
				t.Fatal("the broken unit is the good one: the replacement found nothing")
			}
			path := writeUnit(t, t.TempDir(), "tokd.service", tt.unit)
			problems := verify(t, analyze, false, path)
			if len(problems) == 0 {
				t.Errorf("systemd-analyze verify accepted a broken unit:\n%s", tt.unit)
			}
			t.Logf("reported: %s", strings.Join(problems, "; "))
		})
	}
}

// TestSecurity keeps the system service's hardening from eroding:
// systemd-analyze security must rate its exposure 2.0 or lower (on its
// 0-10 scale; "OK" ends at 4.9). Dropping ProtectSystem=, the system call
// filter or the empty capability set each pushes it over.
func TestSecurity(t *testing.T) {
	analyze := lookPath(t, "systemd-analyze")
	tokd := buildTokd(t)
	path := writeUnit(t, t.TempDir(), "tokd.service",
		replaceExecStart(t, "tokd.service", readFile(t, "tokd.service"), tokd))
	for _, tt := range []struct {
		name    string
		unit    string
		wantErr bool
	}{
		{name: "tokd.service", unit: path},
		// The same check must fail without the hardening, or it proves nothing.
		{name: "unhardened", unit: writeUnit(t, t.TempDir(), "tokd.service",
			"[Service]\nType=notify\nExecStart="+tokd+"\nUser=tokd\n"), wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", tt.unit)
			out, err := cmd.CombinedOutput()
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("systemd-analyze security: error %v, want error %v\n%s", err, tt.wantErr, lastLines(out, 3))
			}
		})
	}
}

// TestUnitsMatchTheCode checks the settings other parts of tokd depend on,
// which systemd cannot know about.
func TestUnitsMatchTheCode(t *testing.T) {
	sys := parseUnit(t, "tokd.service")
	sysSock := parseUnit(t, "tokd.socket")
	user := parseUnit(t, "user/tokd.service")
	userSock := parseUnit(t, "user/tokd.socket")

	// The root default of tokctl, and the path tokd binds as
	// $RUNTIME_DIRECTORY/tokd.sock when started without the socket unit.
	rootSocket := apitype.DefaultSocket(0, "")
	want := []struct {
		unit         unitFile
		section, key string
		value        string
	}{
		{sys, "Service", "Type", "notify"},
		{sys, "Service", "ExecStart", packagedTokd + " --config /etc/tokd/tokd.toml"},
		{sys, "Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{sys, "Service", "User", "tokd"},
		{sys, "Service", "Group", "tokd"},
		{sys, "Service", "StateDirectory", "tokd"},
		{sys, "Service", "StateDirectoryMode", "0700"},
		{sys, "Service", "RuntimeDirectory", filepath.Base(filepath.Dir(rootSocket))},
		{sys, "Service", "RuntimeDirectoryMode", "0755"},
		{sys, "Service", "RuntimeDirectoryPreserve", "yes"},
		{sys, "Service", "WatchdogSec", "30s"},
		{sys, "Service", "Restart", "on-failure"},
		{sys, "Service", "CapabilityBoundingSet", ""},
		{sys, "Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{sys, "Service", "UMask", "0077"},
		// tokd reads no other process's /proc entry (SO_PEERGROUPS gives
		// the callers' groups), so it need not see other users' processes.
		{sys, "Service", "ProtectProc", "invisible"},
		{sys, "Install", "Also", "tokd.socket"},
		{sysSock, "Socket", "ListenStream", rootSocket},
		{sysSock, "Socket", "SocketMode", fmt.Sprintf("%04o", daemon.SocketMode)},
		{sysSock, "Socket", "FileDescriptorName", "tokd"},
		{sysSock, "Socket", "Service", "tokd.service"},
		{user, "Service", "Type", "notify"},
		{user, "Service", "ExecStart", packagedTokd + " --config %E/tokd/tokd.toml"},
		{user, "Service", "RuntimeDirectory", "tokd"},
		{user, "Service", "RuntimeDirectoryPreserve", "yes"},
		{user, "Service", "WatchdogSec", "30s"},
		{user, "Install", "Also", "tokd.socket"},
		// tokctl's default for other users, with %t standing for $XDG_RUNTIME_DIR.
		{userSock, "Socket", "ListenStream", apitype.DefaultSocket(1000, "%t")},
		{userSock, "Socket", "FileDescriptorName", "tokd"},
		{userSock, "Socket", "Service", "tokd.service"},
	}
	for _, w := range want {
		got, ok := w.unit.values[w.section+"."+w.key]
		switch {
		case !ok:
			t.Errorf("%s: [%s] has no %s=; want %s=%s", w.unit.name, w.section, w.key, w.key, w.value)
		case len(got) != 1 || got[0] != w.value:
			t.Errorf("%s: [%s] %s=%q; want %q", w.unit.name, w.section, w.key, got, w.value)
		}
	}
	if got, want := filepath.Dir(rootSocket), "/run/"+sys.values["Service.RuntimeDirectory"][0]; got != want {
		t.Errorf("the socket's directory %s is not the RuntimeDirectory %s", got, want)
	}
	// The sealing key comes from the credential store when present.
	if !slices.Contains(sys.values["Service.LoadCredential"], "tokd.key") {
		t.Errorf("tokd.service: no LoadCredential=tokd.key")
	}
	// Options that would break SO_PEERCRED authorisation, or the metrics:
	// ProcSubset=pid hides /proc/stat, whose boot time the process
	// collector needs, and process_start_time_seconds goes missing
	// (packaging/boot-test.sh checks it under the real sandbox).
	for _, u := range []unitFile{sys, user} {
		for _, key := range []string{"PrivateUsers", "DynamicUser", "ProcSubset"} {
			if v, ok := u.values["Service."+key]; ok {
				t.Errorf("%s: %s=%s breaks per-caller authorisation or the metrics (see the unit's comments)", u.name, key, v)
			}
		}
	}
}

// verify runs systemd-analyze verify on the unit files at paths and
// returns its complaints about them. systemd-analyze exits 1 on some
// problems (a missing executable) but only prints a warning for others
// (an unknown key), so any output line naming one of the units counts;
// lines about other units on this machine are logged and ignored.
func verify(t *testing.T, analyze string, user bool, paths ...string) []string {
	t.Helper()
	args := []string{"verify", "--man=no", "--recursive-errors=no"}
	if user {
		args = append(args, "--user")
	}
	cmd := exec.Command(analyze, append(args, paths...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	if user {
		// The user manager's lookup paths need a runtime directory.
		runtime := t.TempDir()
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+runtime)
	}
	out, err := cmd.CombinedOutput()
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	var problems []string
	if err != nil {
		problems = append(problems, fmt.Sprintf("exit: %v", err))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		if containsAny(line, names) {
			problems = append(problems, line)
		} else {
			t.Logf("systemd-analyze (ignored, not about these units): %s", line)
		}
	}
	return problems
}

// unitFile is a parsed unit: every value of section.key, in order.
type unitFile struct {
	name   string
	values map[string][]string
}

// parseUnit reads a unit file the way systemd does for the simple
// syntax these units use: sections, key=value, comments, no continuation
// lines. An empty assignment (CapabilityBoundingSet=) is kept as "".
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	u := unitFile{name: path, values: map[string][]string{}}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not supported by this test", path, n)
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			k := section + "." + strings.TrimSpace(key)
			u.values[k] = append(u.values[k], strings.TrimSpace(value))
		}
	}
	return u
}

// replaceExecStart points the unit's ExecStart at tokd, keeping the
// arguments, and fails unless it found exactly one packaged ExecStart.
func replaceExecStart(t *testing.T, name, unit, tokd string) string {
	t.Helper()
	prefix := "ExecStart=" + packagedTokd + " "
	if n := strings.Count(unit, "\n"+prefix); n != 1 {
		t.Fatalf("%s: %d lines start with %q; want 1", name, n, prefix)
	}
	return strings.Replace(unit, "\n"+prefix, "\nExecStart="+tokd+" ", 1)
}

var (
	buildOnce sync.Once
	builtTokd string
	buildErr  error
)

// buildTokd builds ./cmd/tokd once per test binary and returns its path.
func buildTokd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tokd-units-")
		if err != nil {
			buildErr = err
			return
		}
		builtTokd = filepath.Join(dir, "tokd")
		out, err := exec.Command("go", "build", "-o", builtTokd, "../cmd/tokd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/tokd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtTokd
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtTokd != "" {
		os.RemoveAll(filepath.Dir(builtTokd))
	}
	os.Exit(code)
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install systemd); the unit files are not verified", name)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeUnit(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func lastLines(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
