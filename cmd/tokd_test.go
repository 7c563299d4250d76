package cmd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokd/tokd/emulator"
)

// tokdEnv is the real tokd binary serving one profile, "demo", against an
// in-process identity-domain emulator: the fixture of the credential
// helper tests, which then run the real git, client-go and docker clients.
type tokdEnv struct {
	Dir    string // a private directory: config, key, secret, state, HOME
	Socket string
	Em     *emulator.Emulator
	App    *emulator.DevApp
	Domain string // the emulator's URL
	// Env is the environment for tokctl and the clients that run it:
	// binDir first on PATH, TOKD_SOCKET, HOME in Dir.
	Env    []string
	stderr *bytes.Buffer
}

// startTokd writes a configuration whose demo profile has the given extra
// TOML sections (e.g. "[profiles.demo.git]\nurls = [...]"), starts tokd,
// and waits for its READY=1. tokd is stopped when the test ends.
func startTokd(t *testing.T, extra string) *tokdEnv {
	t.Helper()
	em, app, err := emulator.NewDev(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	if err := em.SetDomainURL(srv.URL); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "tokd-h-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	e := &tokdEnv{Dir: dir, Socket: filepath.Join(sockDir, "tokd.sock"), Em: em, App: app, Domain: srv.URL, stderr: new(bytes.Buffer)}
	for name, data := range map[string][]byte{"user.pem": app.KeyPEM, "client.secret": []byte(app.ClientSecret + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`state_dir = %q

[profiles.demo]
domain_url = %q
client_id = %q
client_secret_file = "client.secret"
scopes = ["urn:opc:idm:__myscopes__"]

[profiles.demo.assertion]
subject = %q
key_file = "user.pem"
key_id = %q

%s
`, filepath.Join(dir, "state"), srv.URL, app.ClientID, app.User, app.CertAlias, extra)
	cfgPath := filepath.Join(dir, "tokd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	notifyPath := filepath.Join(sockDir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	e.Env = append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"TOKD_SOCKET="+e.Socket,
		"HOME="+dir,
		"XDG_CONFIG_HOME="+filepath.Join(dir, ".config"),
	)
	cmd := exec.Command(filepath.Join(binDir, "tokd"), "--config", cfgPath, "--socket", e.Socket)
	cmd.Env = append(e.Env, "NOTIFY_SOCKET="+notifyPath)
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("tokd did not stop cleanly: %v\n%s", err, e.stderr)
		}
	})
	if err := waitReady(notify, 30*time.Second); err != nil {
		t.Fatalf("tokd not ready: %v\n%s", err, e.stderr)
	}
	return e
}

// waitReady reads sd_notify datagrams until READY=1.
func waitReady(conn *net.UnixConn, timeout time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				return nil
			}
		}
	}
}

// Command returns a command run in e's environment and directory; tokd
// and tokctl are the binaries under test.
func (e *tokdEnv) Command(name string, args ...string) *exec.Cmd {
	if name == "tokd" || name == "tokctl" {
		name = filepath.Join(binDir, name)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = e.Env
	cmd.Dir = e.Dir
	return cmd
}

// readmeBlock returns the first fenced code block of README.md that
// follows the heading line heading, so that tests run the snippets the
// README shows.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	found, in := false, false
	var block []string
	fence := regexp.MustCompile("^```")
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !found:
			found = line == heading
		case !in && fence.MatchString(line):
			in = true
		case in && fence.MatchString(line):
			return strings.Join(block, "\n") + "\n"
		case in:
			block = append(block, line)
		}
	}
	t.Fatalf("README.md has no code block under %q", heading)
	return ""
}

func TestTokdEnv(t *testing.T) {
	e := startTokd(t, "")
	out, err := e.Command("tokctl", "get", "demo").Output()
	if err != nil {
		t.Fatalf("tokctl get: %v", err)
	}
	if !regexp.MustCompile(`^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$`).Match(out) {
		t.Errorf("tokctl get printed %q, want one JWT line", out)
	}
	if got := e.Em.Stats().TokenRequests; got != 1 {
		t.Errorf("emulator saw %d token requests, want 1", got)
	}
	if block := readmeBlock(t, "### git"); !strings.Contains(block, "tokctl git-credential") {
		t.Errorf("README's git block = %q", block)
	}
}
