// Package packaging_test checks what the packages ship besides the
// binaries: the example configuration (with tokd's own loader), the shell
// completions (by running them), the man pages, the maintainer scripts,
// and the Prometheus alert rules (with promtool). Checks that need a tool
// this machine lacks (fish, zsh, groff, promtool, systemd-sysusers) skip
// and say which Debian package provides it.
//
// The packages themselves are built and checked by `make package
// check-package`; the Kubernetes manifests by the packaging/tools module.
package packaging_test

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/tokd/tokd/config"
)

// credentialsDir is where systemd puts tokd.service's credentials.
const credentialsDir = "/run/credentials/tokd.service"

// TestExampleConfig loads the packaged /etc/tokd/tokd.toml with tokd's
// loader, as tokd.service would: relative paths resolve in
// $CREDENTIALS_DIRECTORY, which holds the files it names.
func TestExampleConfig(t *testing.T) {
	data := readFile(t, "tokd.toml.example")
	fsys := fstest.MapFS{
		"run/credentials/tokd.service/ci.secret":   {Data: []byte("not-a-real-secret\n"), Mode: 0o400},
		"run/credentials/tokd.service/ci-user.pem": {Data: rsaKeyPEM(t), Mode: 0o400},
	}
	cfg, warnings, err := config.Parse([]byte(data), config.Options{CredentialsDirectory: credentialsDir, FS: fsys})
	if err != nil {
		t.Fatalf("tokd.toml.example: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w)
	}
	// systemd's directories apply only when the file leaves these unset.
	if cfg.Socket != "" || cfg.StateDir != "" {
		t.Errorf("socket = %q, state_dir = %q: leave them to RuntimeDirectory= and StateDirectory=", cfg.Socket, cfg.StateDir)
	}
	p, ok := cfg.Profiles["ci"]
	if !ok {
		t.Fatalf("no profile ci; profiles %v", cfg.ProfileNames())
	}
	for key, got := range map[string]string{
		"client_secret_file": p.ClientSecretFile,
		"assertion.key_file": p.Assertion.KeyFile,
	} {
		if !strings.HasPrefix(got, credentialsDir+"/") {
			t.Errorf("profiles.ci.%s resolved to %s, not into %s", key, got, credentialsDir)
		}
	}
}

// TestExampleCommentedKeys checks that every commented-out setting of the
// example names a key tokd knows, in the table it appears in, so that
// uncommenting one never produces an "unknown key" error.
func TestExampleCommentedKeys(t *testing.T) {
	known := map[string][]string{ // table kind -> keys
		"":          tomlKeys(reflect.TypeFor[config.Config]()),
		"profile":   tomlKeys(reflect.TypeFor[config.Profile]()),
		"assertion": tomlKeys(reflect.TypeFor[config.Assertion]()),
		"git":       tomlKeys(reflect.TypeFor[config.Git]()),
		"docker":    tomlKeys(reflect.TypeFor[config.Docker]()),
	}
	table := regexp.MustCompile(`^#?\[profiles\.[A-Za-z0-9._-]+?(?:\.(assertion|git|docker))?\]$`)
	setting := regexp.MustCompile(`^#?([a-z_]+) = `)
	kind, checked := "", 0
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "tokd.toml.example")))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := table.FindStringSubmatch(line); m != nil {
			kind = m[1]
			if kind == "" {
				kind = "profile"
			}
			continue
		}
		m := setting.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(line, "#") {
			continue
		}
		checked++
		if !slices.Contains(known[kind], m[1]) {
			t.Errorf("tokd.toml.example:%d: %q is not a key of a %q table; known: %v", n, m[1], kind, known[kind])
		}
	}
	if checked < 10 {
		t.Errorf("only %d commented settings found; is the pattern still right?", checked)
	}
}

func tomlKeys(typ reflect.Type) []string {
	var keys []string
	for i := range typ.NumField() {
		if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// completionCases are command lines, the cursor at their end, and the
// candidates the completion must offer, checked in bash and fish. A fake
// tokctl on PATH answers status --json with the profiles ci and deploy.
var completionCases = []struct {
	line string
	want []string
	not  []string
}{
	{line: "tokctl ", want: []string{"get", "status", "refresh", "forget", "import", "git-credential", "kubectl-credential", "docker-credential", "exec"}},
	{line: "tokctl g", want: []string{"get", "git-credential"}, not: []string{"status"}},
	{line: "tokctl --", want: []string{"--socket"}},
	{line: "tokctl get ", want: []string{"ci", "deploy"}},
	{line: "tokctl get --", want: []string{"--json", "--header"}},
	{line: "tokctl get ci ", not: []string{"ci", "deploy"}},
	{line: "tokctl status -", want: []string{"--json"}},
	{line: "tokctl --socket /tmp/t.sock refresh d", want: []string{"deploy"}, not: []string{"ci"}},
	{line: "tokctl forget ", want: []string{"ci", "deploy"}},
	{line: "tokctl kubectl-credential ", want: []string{"ci", "deploy"}},
	{line: "tokctl git-credential ", want: []string{"get", "store", "erase"}},
	{line: "tokctl docker-credential ", want: []string{"get", "list", "store", "erase", "version"}},
	{line: "tokctl exec ", want: []string{"ci", "deploy"}},
	{line: "tokctl exec ci ", want: []string{"--"}},
	{line: "tokctl exec --", want: []string{"--env"}},
	{line: "tokctl exec --env MY_TOKEN ", want: []string{"ci", "deploy"}},
	{line: "tokctl exec --env MY_TOKEN ci ", want: []string{"--"}, not: []string{"ci"}},
	{line: "tokctl import ci ", want: []string{"tokens1.tok"}},
}

// fakeTokctl writes a tokctl that answers `status --json` like tokd, and
// logs its arguments, into a new directory, which it returns.
func fakeTokctl(t *testing.T) (dir, argsLog string) {
	t.Helper()
	dir = t.TempDir()
	argsLog = filepath.Join(dir, "args")
	script := `#!/bin/sh
echo "$*" >>'` + argsLog + `'
cat <<'EOF'
{
  "version": "test",
  "profiles": [
    {
      "profile": "ci",
      "state": "fresh",
      "refresh_token": false
    },
    {
      "profile": "deploy",
      "state": "fresh",
      "refresh_token": false
    }
  ]
}
EOF
`
	writeFile(t, filepath.Join(dir, "tokctl"), script, 0o755)
	// A file for the import case.
	writeFile(t, filepath.Join(dir, "tokens1.tok"), "{}", 0o644)
	return dir, argsLog
}

func TestBashCompletion(t *testing.T) {
	bash := lookPath(t, "bash", "bash")
	script, err := filepath.Abs("completions/tokctl.bash")
	if err != nil {
		t.Fatal(err)
	}
	bin, argsLog := fakeTokctl(t)
	for _, tc := range completionCases {
		t.Run(tc.line, func(t *testing.T) {
			// COMP_WORDS as bash splits the line; an empty last word when
			// the line ends in a space.
			words := strings.Fields(tc.line)
			if strings.HasSuffix(tc.line, " ") {
				words = append(words, "")
			}
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := fmt.Sprintf(`source %q
COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE=%q; COMP_POINT=${#COMP_LINE}
_tokctl
printf '%%s\n' "${COMPREPLY[@]}"`, script, strings.Join(quoted, " "), len(words)-1, tc.line)
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
			cmd.Dir = bin
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			checkCandidates(t, strings.Fields(string(out)), tc.want, tc.not)
		})
	}
	if log := readFile(t, argsLog); !strings.Contains(log, "--socket /tmp/t.sock status --json") {
		t.Errorf("the completion did not pass --socket on to tokctl; tokctl was run with:\n%s", log)
	}
}

func TestFishCompletion(t *testing.T) {
	fish := lookPath(t, "fish", "fish")
	script, err := filepath.Abs("completions/tokctl.fish")
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := fakeTokctl(t)
	for _, tc := range completionCases {
		t.Run(tc.line, func(t *testing.T) {
			cmd := exec.Command(fish, "--no-config", "-c", fmt.Sprintf("source %s; complete -C %s", fishQuote(script), fishQuote(tc.line)))
			cmd.Dir = bin
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				candidate, _, _ := strings.Cut(line, "\t")
				got = append(got, candidate)
			}
			checkCandidates(t, got, tc.want, tc.not)
		})
	}
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func checkCandidates(t *testing.T, got, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("candidates %q lack %q", got, w)
		}
	}
	for _, n := range not {
		if slices.Contains(got, n) {
			t.Errorf("candidates %q include %q", got, n)
		}
	}
}

// TestShellSyntax parses the completions and the maintainer scripts
// without running them.
func TestShellSyntax(t *testing.T) {
	for _, tt := range []struct {
		shell, pkg string
		files      []string
	}{
		{"sh", "dash", []string{"scripts/postinstall.sh", "scripts/preremove.sh", "scripts/postremove.sh", "copyright.sh"}},
		{"bash", "bash", []string{"completions/tokctl.bash"}},
		{"zsh", "zsh", []string{"completions/_tokctl"}},
		{"fish", "fish", []string{"completions/tokctl.fish"}},
	} {
		t.Run(tt.shell, func(t *testing.T) {
			shell := lookPath(t, tt.shell, tt.pkg)
			for _, f := range tt.files {
				if out, err := exec.Command(shell, "-n", f).CombinedOutput(); err != nil || len(out) > 0 {
					t.Errorf("%s -n %s: %v\n%s", tt.shell, f, err, out)
				}
			}
		})
	}
}

// TestDocumentedEverywhere checks that every tokctl command and flag in
// `tokctl help`, and every tokd flag in `tokd -h`, appears in the man
// pages and the completions, so that a new one is not forgotten there.
func TestDocumentedEverywhere(t *testing.T) {
	tokd, tokctl := buildBinaries(t)

	// tokctl: the words after "commands:" and every --flag in the usage.
	out, err := exec.Command(tokctl, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("tokctl help: %v\n%s", err, out)
	}
	usage := string(out)
	// A command starts a line indented by exactly two spaces; deeper
	// indented lines continue the line above.
	var commands []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)\b`).FindAllStringSubmatch(usage, -1) {
		commands = append(commands, m[1])
	}
	flags := regexp.MustCompile(`--[a-z][a-z-]*`).FindAllString(usage, -1)
	if len(commands) < 5 || len(flags) < 3 {
		t.Fatalf("found only commands %q and flags %q in tokctl help:\n%s", commands, flags, usage)
	}
	docs := map[string]string{
		"man/tokctl.1":            unescapeRoff(readFile(t, "man/tokctl.1")),
		"completions/tokctl.bash": readFile(t, "completions/tokctl.bash"),
		"completions/_tokctl":     readFile(t, "completions/_tokctl"),
		"completions/tokctl.fish": readFile(t, "completions/tokctl.fish"),
	}
	for file, text := range docs {
		for _, c := range commands {
			if !regexp.MustCompile(`(^|[^a-z-])` + regexp.QuoteMeta(c) + `([^a-z-]|$)`).MatchString(text) {
				t.Errorf("%s does not mention the tokctl command %s", file, c)
			}
		}
		for _, f := range slices.Compact(slices.Sorted(slices.Values(flags))) {
			name := strings.TrimPrefix(f, "--")
			// fish spells a long option "-l name".
			if !strings.Contains(text, f) && !strings.Contains(text, "-l "+name) {
				t.Errorf("%s does not mention the tokctl flag %s", file, f)
			}
		}
	}

	// tokd: the flags that `tokd -h` lists, one a line as --name.
	out, _ = exec.Command(tokd, "-h").CombinedOutput()
	tokdFlags := regexp.MustCompile(`(?m)^\s+--([a-z][a-z-]*)`).FindAllStringSubmatch(string(out), -1)
	if len(tokdFlags) < 5 {
		t.Fatalf("found only %d flags in tokd -h:\n%s", len(tokdFlags), out)
	}
	man := unescapeRoff(readFile(t, "man/tokd.8"))
	for _, f := range tokdFlags {
		if !strings.Contains(man, "--"+f[1]) {
			t.Errorf("man/tokd.8 does not document --%s", f[1])
		}
	}
}

func unescapeRoff(s string) string {
	return strings.NewReplacer(`\-`, "-", `\&`, "", `\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "").Replace(s)
}

// TestManPages formats the man pages with groff's warnings on: any
// warning (a bad macro, an unknown escape) fails, as lintian would.
func TestManPages(t *testing.T) {
	groff := lookPath(t, "groff", "groff")
	for _, page := range []string{"man/tokd.8", "man/tokctl.1"} {
		cmd := exec.Command(groff, "-man", "-ww", "-z", "-Tutf8", page)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", page, err, out)
		}
	}
}

// TestPostinstallCreatesUser runs the post-installation script with stub
// commands on PATH and checks how it creates the tokd user: through
// systemd-sysusers when present, else useradd; never when tokd exists.
func TestPostinstallCreatesUser(t *testing.T) {
	sh := lookPath(t, "sh", "dash")
	script, err := filepath.Abs("scripts/postinstall.sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		userKnown bool
		stubs     []string // commands present besides getent
		want      []string // calls, in order
	}{
		{name: "deb install with sysusers", args: []string{"configure", ""},
			stubs: []string{"systemd-sysusers", "useradd", "groupadd"},
			want:  []string{"getent passwd tokd", "systemd-sysusers tokd.conf"}},
		{name: "rpm install without sysusers", args: []string{"1"},
			stubs: []string{"useradd", "groupadd"},
			want: []string{"getent passwd tokd", "getent group tokd", "groupadd --system tokd",
				"useradd --system --gid tokd --home-dir /var/lib/tokd --no-create-home --shell " + nologin() +
					" --comment tokd credential daemon tokd"}},
		{name: "deb upgrade, user exists", args: []string{"configure", "0.9.0-1"}, userKnown: true,
			stubs: []string{"systemd-sysusers", "useradd", "groupadd"},
			want:  []string{"getent passwd tokd"}},
		{name: "deb abort-upgrade", args: []string{"abort-upgrade", "1.0.0-1"},
			stubs: []string{"systemd-sysusers"},
			want:  nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "calls")
			getentStatus := "2"
			if tt.userKnown {
				getentStatus = "0"
			}
			writeFile(t, filepath.Join(dir, "getent"), "#!/bin/sh\necho \"getent $*\" >>"+log+"\nexit "+getentStatus+"\n", 0o755)
			for _, s := range tt.stubs {
				writeFile(t, filepath.Join(dir, s), "#!/bin/sh\necho \""+s+" $*\" >>"+log+"\n", 0o755)
			}
			// systemctl and deb-systemd-invoke are stubs too, in case this
			// machine runs systemd; their calls are not checked here.
			for _, s := range []string{"systemctl", "deb-systemd-invoke"} {
				writeFile(t, filepath.Join(dir, s), "#!/bin/sh\n", 0o755)
			}
			cmd := exec.Command(sh, append([]string{script}, tt.args...)...)
			cmd.Env = []string{"PATH=" + dir}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("postinstall.sh %q: %v\n%s", tt.args, err, out)
			}
			var calls []string
			if data, err := os.ReadFile(log); err == nil {
				calls = strings.Split(strings.TrimSpace(string(data)), "\n")
			}
			if !slices.Equal(calls, tt.want) {
				t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(calls, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// TestMaintainerScriptsRecordEnablement runs the maintainer scripts with
// a stub deb-systemd-helper: configure must record the units' enablement
// links (system and --global user ones) in its state, as
// dh_installsystemd --no-enable does, so that purge removes the links an
// administrator made with systemctl enable; deb-systemd-helper purge
// alone forgets only links it recorded. Checked for real in a chroot:
// without update-state, /etc/systemd/system/multi-user.target.wants/
// tokd.service outlived dpkg --purge.
func TestMaintainerScriptsRecordEnablement(t *testing.T) {
	sh := lookPath(t, "sh", "dash")
	tests := []struct {
		name, script string
		args         []string
		want         []string
	}{
		{name: "deb install", script: "postinstall.sh", args: []string{"configure", ""},
			want: []string{"update-state tokd.socket tokd.service", "--user update-state tokd.socket tokd.service"}},
		{name: "deb upgrade", script: "postinstall.sh", args: []string{"configure", "0.9.0-1"},
			want: []string{"update-state tokd.socket tokd.service", "--user update-state tokd.socket tokd.service"}},
		{name: "rpm install", script: "postinstall.sh", args: []string{"1"}},
		{name: "deb remove", script: "postremove.sh", args: []string{"remove"}},
		{name: "deb purge", script: "postremove.sh", args: []string{"purge"},
			want: []string{"purge tokd.socket tokd.service", "--user purge tokd.socket tokd.service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script, err := filepath.Abs(filepath.Join("scripts", tt.script))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			log := filepath.Join(dir, "calls")
			writeFile(t, filepath.Join(dir, "deb-systemd-helper"), "#!/bin/sh\necho \"$*\" >>"+log+"\n", 0o755)
			// The user exists; the rest are silent stubs, in case this
			// machine runs systemd.
			for _, s := range []string{"getent", "systemctl", "deb-systemd-invoke", "rm"} {
				writeFile(t, filepath.Join(dir, s), "#!/bin/sh\n", 0o755)
			}
			cmd := exec.Command(sh, append([]string{script}, tt.args...)...)
			cmd.Env = []string{"PATH=" + dir}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %q: %v\n%s", tt.script, tt.args, err, out)
			}
			var calls []string
			if data, err := os.ReadFile(log); err == nil {
				calls = strings.Split(strings.TrimSpace(string(data)), "\n")
			}
			if !slices.Equal(calls, tt.want) {
				t.Errorf("deb-systemd-helper calls:\n  %s\nwant:\n  %s", strings.Join(calls, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// nologin is the shell postinstall.sh picks on this machine.
func nologin() string {
	if _, err := os.Stat("/usr/sbin/nologin"); err == nil {
		return "/usr/sbin/nologin"
	}
	return "/sbin/nologin"
}

// TestSysusers applies the packaged sysusers.d file to an empty root and
// checks the user it creates.
func TestSysusers(t *testing.T) {
	sysusers := lookPath(t, "systemd-sysusers", "systemd")
	if os.Getuid() != 0 {
		t.Skip("systemd-sysusers --root needs root")
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("tokd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+root, conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd := readFile(t, filepath.Join(root, "etc/passwd"))
	if !regexp.MustCompile(`(?m)^tokd:x:\d+:\d+:[^:]*:/var/lib/tokd:/usr/sbin/nologin$`).MatchString(passwd) {
		t.Errorf("/etc/passwd after systemd-sysusers:\n%s", passwd)
	}
	if group := readFile(t, filepath.Join(root, "etc/group")); !strings.HasPrefix(group, "tokd:x:") {
		t.Errorf("/etc/group after systemd-sysusers:\n%s", group)
	}
}

// TestAlertRules checks the alert rules with promtool, and runs their unit
// tests: which alerts fire, when, with which labels and annotations.
func TestAlertRules(t *testing.T) {
	promtool := lookPath(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "tokd-alerts.yml"},
		{"test", "rules", "tokd-alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	keyOnce   sync.Once
	keyPEM    []byte
	keyErr    error
)

// buildBinaries builds tokd and tokctl from this tree, once.
func buildBinaries(t *testing.T) (tokd, tokctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tokd-packaging-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../cmd/tokd", "../cmd/tokctl").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "tokd"), filepath.Join(binDir, "tokctl")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func rsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	keyOnce.Do(func() {
		var k *rsa.PrivateKey
		if k, keyErr = rsa.GenerateKey(rand.Reader, 2048); keyErr != nil {
			return
		}
		var der []byte
		if der, keyErr = x509.MarshalPKCS8PrivateKey(k); keyErr == nil {
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return keyPEM
}

func lookPath(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install %s); skipping", name, debianPackage)
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

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
