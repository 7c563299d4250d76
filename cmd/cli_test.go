package cmd_test

import (
	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/emulator"
)

// binDir holds the tokd and tokctl binaries that the scripts run, built
// once from this tree.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tokd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "./tokd", "./tokctl")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the binaries: %v\n%s", err, out)
		return 1
	}
	// docker runs its helper by this name, as the packages install it.
	if err := os.Symlink("tokctl", filepath.Join(dir, "docker-credential-tokd")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// TestCLI runs testdata/script/*.txtar against the real binaries.
func TestCLI(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			// Short socket paths: sun_path is 108 bytes and $WORK is long.
			sockDir, err := os.MkdirTemp("", "tokd-s-")
			if err != nil {
				return err
			}
			env.Defer(func() { os.RemoveAll(sockDir) })
			env.Setenv("SOCK", filepath.Join(sockDir, "tokd.sock"))
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("XDG_RUNTIME_DIR", sockDir)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"emulator":    cmdEmulator,
			"emufault":    cmdEmuFault,
			"emurequests": cmdEmuRequests,
			"notifysock":  cmdNotifySock,
			"waitready":   cmdWaitReady,
			"tokfile":     cmdTokFile,
			"notcontains": cmdNotContains,
			"exitcode":    cmdExitCode,
			"signal":      cmdSignal,
			"envsubst":    cmdEnvSubst,
			"waitstatus":  cmdWaitStatus,
			"waitlog":     cmdWaitLog,
		},
		RequireExplicitExec: true,
	})
}

// emulators maps a script's work directory to its running emulator.
var emulators sync.Map

// cmdEmulator starts an identity-domain emulator for the script and writes
// the demo app's key and secret into $WORK, setting DOMAIN, CLIENT_ID,
// USER_NAME and KID.
func cmdEmulator(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: emulator")
	}
	em, app, err := emulator.NewDev(emulator.Options{})
	ts.Check(err)
	srv := httptest.NewServer(em)
	ts.Defer(srv.Close)
	ts.Check(em.SetDomainURL(srv.URL))
	emulators.Store(ts.Getenv("WORK"), em)
	ts.Defer(func() { emulators.Delete(ts.Getenv("WORK")) })
	ts.Check(os.WriteFile(ts.MkAbs("user.pem"), app.KeyPEM, 0o600))
	ts.Check(os.WriteFile(ts.MkAbs("client.secret"), []byte(app.ClientSecret+"\n"), 0o600))
	ts.Setenv("DOMAIN", srv.URL)
	ts.Setenv("CLIENT_ID", app.ClientID)
	ts.Setenv("USER_NAME", app.User)
	ts.Setenv("KID", app.CertAlias)
}

func scriptEmulator(ts *testscript.TestScript) *emulator.Emulator {
	em, ok := emulators.Load(ts.Getenv("WORK"))
	if !ok {
		ts.Fatalf("no emulator: run 'emulator' first")
	}
	return em.(*emulator.Emulator)
}

// cmdEmuFault sets the emulator's outage: "emufault 503" fails every
// token request with that status, "emufault off" ends the outage.
func cmdEmuFault(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: emufault STATUS|off")
	}
	em := scriptEmulator(ts)
	if args[0] == "off" {
		em.ClearFaults()
		return
	}
	status, err := strconv.Atoi(args[0])
	ts.Check(err)
	em.SetOutage(emulator.ServerErrorFault(status))
}

// cmdEmuRequests asserts how many token requests the emulator has seen.
func cmdEmuRequests(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: emurequests N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := scriptEmulator(ts).Stats().TokenRequests
	if (got == want) == neg {
		ts.Fatalf("emulator saw %d token requests, want %s%d", got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// cmdNotifySock binds a datagram socket and points NOTIFY_SOCKET at it,
// so that waitready can block until tokd says READY=1.
func cmdNotifySock(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: notifysock")
	}
	path := filepath.Join(filepath.Dir(ts.Getenv("SOCK")), "notify.sock")
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	ts.Check(err)
	ts.Defer(func() { conn.Close() })
	notifyConns.Store(ts.Getenv("WORK"), conn)
	ts.Setenv("NOTIFY_SOCKET", path)
}

var notifyConns sync.Map

// cmdWaitReady blocks until tokd sends READY=1 (at most 60 s).
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	v, ok := notifyConns.Load(ts.Getenv("WORK"))
	if neg || !ok {
		ts.Fatalf("usage: notifysock, then exec tokd ... &, then waitready")
	}
	conn := v.(*net.UnixConn)
	ts.Check(conn.SetReadDeadline(time.Now().Add(60 * time.Second)))
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			ts.Fatalf("waiting for READY=1: %v", err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				return
			}
		}
	}
}

// tokFileKey signs the tokens of every tokfile: generating an RSA key
// costs far more than signing, the more so under the race detector.
var tokFileKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// cmdTokFile writes a Console-style token file holding a JWT that
// expires in the given duration: "tokfile NAME 1h [refresh]". It also
// writes the bare token and a newline to NAME.token, which is what
// "tokctl get" prints once the file is imported.
func cmdTokFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: tokfile NAME DURATION [refresh]")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	key, err := tokFileKey()
	ts.Check(err)
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "console-user", "iat": now.Unix(), "exp": now.Add(d).Unix(),
	}).SignedString(key)
	ts.Check(err)
	body := fmt.Sprintf(`{"app_access_token":%q}`, tok)
	if len(args) == 3 {
		body = fmt.Sprintf(`{"app_access_token":%q,"app_refresh_token":"rt-from-console"}`, tok)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(body), 0o600))
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".token"), []byte(tok+"\n"), 0o600))
}

// cmdExitCode runs a program, like exec, and asserts its exact exit
// status: "exitcode 2 tokctl get". Its stdout and stderr are kept for
// the stdout and stderr commands that follow.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Exited() {
			ts.Fatalf("running %s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// signals are the signals cmdSignal sends; testscript's kill knows only
// INT and KILL.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL,
}

// cmdSignal sends a signal to the background commands started with
// "exec ... &" since the last wait: "signal HUP tokd" to those running
// the program tokd, "signal HUP" to all of them. Follow it with wait to
// collect a command that the signal ends.
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: signal HUP|INT|TERM|KILL [program]")
	}
	sig, ok := signals[args[0]]
	if !ok {
		ts.Fatalf("unknown signal %q", args[0])
	}
	sent := 0
	for _, cmd := range ts.BackgroundCmds() {
		if len(args) == 2 && filepath.Base(cmd.Path) != args[1] {
			continue
		}
		ts.Check(cmd.Process.Signal(sig))
		sent++
	}
	if sent == 0 {
		ts.Fatalf("no background command to signal")
	}
}

// cmdEnvSubst writes OUT as IN with $VAR and ${VAR} replaced by the
// script's environment, since testscript leaves archive files as they
// are: "envsubst tokd.toml.in tokd.toml". Files tokd reads keep mode
// 0600.
func cmdEnvSubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: envsubst IN OUT")
	}
	out := os.Expand(ts.ReadFile(args[0]), func(name string) string {
		v := ts.Getenv(name)
		if v == "" {
			ts.Fatalf("%s: $%s is not set", args[0], name)
		}
		return v
	})
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o600))
}

// waitDeadline bounds the polling of waitstatus and waitlog.
const waitDeadline = 30 * time.Second

// poll calls cond every few milliseconds until it reports true, and fails
// the script with what last said when waitDeadline passes first.
func poll(ts *testscript.TestScript, what string, cond func() (bool, string)) {
	deadline := time.Now().Add(waitDeadline)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("gave up after %v waiting for %s; last: %s", waitDeadline, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdWaitStatus polls tokd's status on $SOCK until the profile is listed,
// in the given state if one is named: "waitstatus ci valid". With
// -noerror it also waits for the profile's last error to clear. It is how
// a script waits for what tokd does on its own: a reload, a retry.
func cmdWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	noError := len(args) > 0 && args[0] == "-noerror"
	if noError {
		args = args[1:]
	}
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitstatus [-noerror] PROFILE [STATE]")
	}
	profile, want := args[0], ""
	if len(args) == 2 {
		want = args[1]
	}
	what := "profile " + profile + " " + cmp.Or(want, "listed")
	if noError {
		what += " without an error"
	}
	c := &client.Client{Socket: ts.Getenv("SOCK"), Timeout: 5 * time.Second}
	poll(ts, what, func() (bool, string) {
		st, err := c.Status()
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Profiles {
			if p.Profile == profile {
				ok := (want == "" || p.State == want) && (!noError || p.LastError == "")
				return ok, fmt.Sprintf("state %s, last error %q", p.State, p.LastError)
			}
		}
		return false, "not listed"
	})
}

// cmdWaitLog polls a file (tokd's stderr redirected there) until a line
// matches the regular expression, or with -count=N until N lines do:
// "waitlog tokd.log 'reload refused'".
func cmdWaitLog(ts *testscript.TestScript, neg bool, args []string) {
	count := 1
	if len(args) > 0 && strings.HasPrefix(args[0], "-count=") {
		n, err := strconv.Atoi(strings.TrimPrefix(args[0], "-count="))
		if err != nil || n < 1 {
			ts.Fatalf("waitlog: bad %s", args[0])
		}
		count, args = n, args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitlog [-count=N] FILE REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	poll(ts, fmt.Sprintf("%d lines matching %q in %s", count, args[1], args[0]), func() (bool, string) {
		data, err := os.ReadFile(ts.MkAbs(args[0]))
		if err != nil {
			return false, err.Error()
		}
		n := len(re.FindAllIndex(data, -1))
		return n >= count, fmt.Sprintf("%d matching lines", n)
	})
}

// cmdNotContains asserts that FILE does not hold the text of NEEDLE (a
// file, trailing newline ignored): "notcontains state/tokd.db tok1".
func cmdNotContains(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: notcontains FILE NEEDLE")
	}
	needle := strings.TrimRight(ts.ReadFile(args[1]), "\n")
	if len(needle) < 16 {
		ts.Fatalf("needle %s is too short to mean anything", args[1])
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	if strings.Contains(string(data), needle) {
		ts.Fatalf("%s holds the text of %s", args[0], args[1])
	}
}
