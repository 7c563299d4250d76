package cmd_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyListener is a NOTIFY_SOCKET owned by the test: it collects what
// tokd tells systemd.
type notifyListener struct {
	path string
	conn *net.UnixConn
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	dir, err := os.MkdirTemp("", "tokd-n-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifyListener{path: path, conn: conn}
}

// waitFor reads notifications until one holds every line of want, and
// returns it; it fails t after 30 s.
func (n *notifyListener) waitFor(t *testing.T, want ...string) string {
	t.Helper()
	if err := n.conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		msg := string(buf[:k])
		lines := strings.Split(msg, "\n")
		all := true
		for _, w := range want {
			found := false
			for _, l := range lines {
				found = found || l == w || strings.HasSuffix(w, "=") && strings.HasPrefix(l, w)
			}
			all = all && found
		}
		if all {
			return msg
		}
	}
}

// writeDemoConfig writes a configuration serving profile demo of a fresh
// emulator-backed fixture and returns its path and the fixture.
func writeDemoConfig(t *testing.T) (*tokdEnv, string) {
	t.Helper()
	e := startTokd(t, "")
	// The fixture's own tokd serves e.Socket; the test's tokd needs its
	// own state directory, since the first holds the store's lock.
	data, err := os.ReadFile(filepath.Join(e.Dir, "tokd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), filepath.Join(e.Dir, "state"), filepath.Join(e.Dir, "state2"), 1)
	path := filepath.Join(e.Dir, "tokd2.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e, path
}

func TestSystemdNotify(t *testing.T) {
	e, cfg := writeDemoConfig(t)
	n := newNotifyListener(t)
	sock := filepath.Join(filepath.Dir(n.path), "tokd.sock")
	cmd := e.Command("tokd", "--config", cfg, "--socket", sock)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=400000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	n.waitFor(t, "READY=1", "STATUS=serving on "+sock)
	// WatchdogSec=0.4s: tokd pings at half of it, repeatedly.
	n.waitFor(t, "WATCHDOG=1")
	n.waitFor(t, "WATCHDOG=1")

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	n.waitFor(t, "RELOADING=1", "MONOTONIC_USEC=")
	n.waitFor(t, "READY=1", "STATUS=configuration reloaded")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.waitFor(t, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tokd after SIGTERM: %v\n%s", err, stderr.String())
	}
}

func TestSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (Debian package systemd)")
	}
	e, cfg := writeDemoConfig(t)
	n := newNotifyListener(t)
	sock := filepath.Join(filepath.Dir(n.path), "activated.sock")
	// systemd-socket-activate binds the socket and passes it as fd 3 with
	// LISTEN_FDS and LISTEN_FDNAMES, as tokd.socket does.
	// It passes the program only the variables named with -E.
	cmd := e.Command(activate, "-l", sock, "--fdname=tokd", "-E", "NOTIFY_SOCKET="+n.path,
		filepath.Join(binDir, "tokd"), "--config", cfg)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// It says "Listening on PATH as 3." once bound; the rest of its and
	// tokd's stderr is kept for failure messages.
	lines := bufio.NewScanner(pipe)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "Listening on "+sock) {
		t.Fatalf("systemd-socket-activate said %q, want it listening on %s", lines.Text(), sock)
	}
	var stderr strings.Builder
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		for lines.Scan() {
			stderr.WriteString(lines.Text() + "\n")
		}
	}()

	// systemd-socket-activate starts tokd on the first connection: that
	// connection is tokctl's, and READY=1 follows.
	out, err := e.Command("tokctl", "--socket", sock, "get", "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("tokctl get through the passed socket: %v\n%s\ntokd: %s", err, out, stderr.String())
	}
	if !strings.HasPrefix(string(out), "eyJ") {
		t.Errorf("tokctl get printed %q", out)
	}
	n.waitFor(t, "READY=1", "STATUS=serving on "+sock)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-copied
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tokd after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="tokd serving" socket=`+sock) {
		t.Errorf("tokd did not serve the passed socket:\n%s", stderr.String())
	}
}

// TestJournalLogs: under systemd, journald stamps every line itself, so
// tokd leaves time= out when stderr is the stream JOURNAL_STREAM names,
// and only then.
func TestJournalLogs(t *testing.T) {
	e, cfg := writeDemoConfig(t)
	for _, tt := range []struct {
		name     string
		matching bool
	}{{"journal", true}, {"other stream", false}} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifyListener(t)
			logPath := filepath.Join(t.TempDir(), "stderr")
			f, err := os.Create(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			ino := st.Ino
			if !tt.matching {
				ino++
			}
			cmd := e.Command("tokd", "--config", cfg, "--socket", filepath.Join(filepath.Dir(n.path), "j.sock"))
			cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+n.path, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, ino))
			cmd.Stderr = f
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			n.waitFor(t, "READY=1")
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			logs := string(data)
			if !strings.Contains(logs, `msg="tokd serving"`) {
				t.Fatalf("no log lines:\n%s", logs)
			}
			if got := strings.Contains(logs, "time="); got == tt.matching {
				t.Errorf("time= in the log: %v, want %v:\n%s", got, !tt.matching, logs)
			}
		})
	}
}

// TestLogFlags: --log-format json writes one JSON object per line, with
// the refresh line carrying profile, outcome, duration and next refresh;
// a bad --log-level or --log-format is a usage error (exit 2).
func TestLogFlags(t *testing.T) {
	e, cfg := writeDemoConfig(t)
	n := newNotifyListener(t)
	sock := filepath.Join(filepath.Dir(n.path), "l.sock")
	cmd := e.Command("tokd", "--config", cfg, "--socket", sock, "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+n.path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.waitFor(t, "READY=1")
	// A get waits for the first fetch, whose line the test reads.
	if out, err := e.Command("tokctl", "--socket", sock, "get", "demo").CombinedOutput(); err != nil {
		t.Fatalf("tokctl get: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	refresh := false
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if rec["msg"] == "token refresh" && rec["outcome"] == "ok" {
			refresh = true
			for _, k := range []string{"profile", "outcome", "duration", "next_refresh"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("the refresh line lacks %s: %q", k, line)
				}
			}
		}
	}
	if !refresh {
		t.Errorf("no refresh line in:\n%s", stderr.String())
	}
	for _, args := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}} {
		err := e.Command("tokd", append([]string{"--config", cfg}, args...)...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("tokd %v: %v, want exit 2", args, err)
		}
	}
}
