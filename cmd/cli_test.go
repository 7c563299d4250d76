package cmd_test

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rogpeppe/go-internal/testscript"

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

// cmdTokFile writes a Console-style token file holding a JWT that
// expires in the given duration: "tokfile NAME 1h [refresh]".
func cmdTokFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: tokfile NAME DURATION [refresh]")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
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
}
