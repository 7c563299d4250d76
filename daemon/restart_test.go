package daemon_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/store"
)

// TestRestartServesFromStore stops a daemon and starts another on the same
// state directory: it serves the stored tokens with zero token requests,
// and the database file never holds a token's text.
func TestRestartServesFromStore(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"), e.jwtProfile("offline", "refresh_token = true"), importProfile("imp"))
	body, imported := tokFile(t, 2*time.Hour)
	e.saw(imported)

	d := e.start()
	ci := d.get(t, "ci")
	offline := d.get(t, "offline")
	if _, err := d.client.Import("imp", body); err != nil {
		t.Fatalf("import: %v", err)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("stopping the first daemon: %v", err)
	}
	requests := e.requests()

	// The stored records, read with the daemon's own key.
	st := e.openStore(t, "the store the daemon left")
	recs, bad, err := st.LoadAll()
	st.Close()
	if err != nil || len(bad) > 0 {
		t.Fatalf("loading the stored records: %v, %v", err, bad)
	}
	secrets := map[string]string{}
	for _, r := range recs {
		secrets[r.Profile+" access token"] = r.AccessToken
		if r.RefreshToken != "" {
			secrets[r.Profile+" refresh token"] = r.RefreshToken
		}
	}
	for _, want := range []struct{ what, text string }{
		{"ci access token", ci.AccessToken},
		{"offline access token", offline.AccessToken},
		{"imp access token", imported},
	} {
		if secrets[want.what] != want.text {
			t.Errorf("the store holds another %s than the one served", want.what)
		}
	}
	if secrets["offline refresh token"] == "" {
		t.Errorf("the store holds no refresh token for the refresh_token = true profile")
	}
	for _, s := range secrets {
		e.saw(s)
	}

	d2 := e.start()
	for _, tc := range []struct{ profile, want string }{
		{"ci", ci.AccessToken},
		{"offline", offline.AccessToken},
		{"imp", imported},
	} {
		t.Run("get "+tc.profile+" after restart", func(t *testing.T) {
			if got := d2.get(t, tc.profile); got.AccessToken != tc.want {
				t.Errorf("get %s after a restart returned another token", tc.profile)
			}
		})
	}
	if err := d2.stop(); err != nil {
		t.Fatalf("stopping the second daemon: %v", err)
	}
	if got := e.requests(); got != requests {
		t.Errorf("the restarted daemon made %d token requests, want 0", got-requests)
	}

	t.Run("the database file never holds a token's text", func(t *testing.T) {
		db, err := os.ReadFile(filepath.Join(e.stateDir, store.DBFileName))
		if err != nil {
			t.Fatal(err)
		}
		if len(db) == 0 {
			t.Fatal("the database file is empty")
		}
		for what, text := range secrets {
			if how := leak(db, text); how != "" {
				t.Errorf("the database file holds the %s: %s", what, how)
			}
		}
	})
}

// TestKillDuringRefreshes kills a daemon process with SIGKILL while the
// test drives a stream of refreshes through its socket: the database it
// leaves opens and holds a token the emulator issued, and a new daemon
// serves that token without a token request.
//
// A token is served before it is written (the cache persists after it
// answers), so a daemon killed moments after its first fetch may leave no
// record at all, which is no fault: the store is a cache. To assert that a
// record survives, the state directory is seeded first by a daemon that
// stops cleanly; the killed daemon must then leave that record or a newer
// one, never none and never a damaged database.
func TestKillDuringRefreshes(t *testing.T) {
	for _, n := range []int{1, 5, 20} {
		t.Run(fmt.Sprintf("after %d refreshes", n), func(t *testing.T) {
			testKillDuringRefreshes(t, n)
		})
	}
}

func testKillDuringRefreshes(t *testing.T, n int) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci", "refresh_token = true"))
	seeder := e.start()
	seed := seeder.get(t, "ci").AccessToken
	if err := seeder.stop(); err != nil {
		t.Fatalf("stopping the seeding daemon: %v", err)
	}
	requests := e.requests()

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, self, "daemon", []string{
		"TOKD_TEST_CONFIG=" + e.cfgPath,
		"TOKD_TEST_SOCKET=" + e.socket,
		"TOKD_TEST_STATE=" + e.stateDir,
	}, nil)
	if line := c.line(t); line != "ready "+e.socket {
		t.Fatalf("the child daemon said %q, want %q", line, "ready "+e.socket)
	}
	cl := &client.Client{Socket: e.socket, Timeout: waitTimeout}
	first, err := cl.Token("ci")
	if err != nil {
		t.Fatalf("get from the child daemon: %v", err)
	}
	if first.AccessToken != seed || e.requests() != requests {
		t.Fatalf("the child daemon did not serve the stored token without a token request")
	}
	seen := []string{seed}

	// Refresh without pause in the background; kill the daemon after n
	// answers, with the next refresh already on its way.
	refreshed := make(chan string, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(refreshed)
		for {
			tok, err := cl.Refresh("ci")
			if err != nil {
				return // the daemon is gone
			}
			select {
			case refreshed <- tok.AccessToken:
			case <-stop:
				return
			}
		}
	}()
	for range n {
		tok, ok := <-refreshed
		if !ok {
			t.Fatalf("a refresh failed after %d of %d; child stderr:\n%s", len(seen)-1, n, c.stderr.String())
		}
		seen = append(seen, tok)
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = c.cmd.Wait()
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child daemon ended with %v, want killed by SIGKILL", err)
	}
	close(stop)
	wg.Wait()
	e.saw(seen...)
	// The child's logs must not hold a token either.
	e.logs.Write([]byte(c.stderr.String()))

	st := e.openStore(t, "the database left by kill -9")
	rec, err := st.Get("ci")
	st.Close()
	if err != nil {
		t.Fatalf("the database left by kill -9 has no record for ci: %v", err)
	}
	e.saw(rec.AccessToken, rec.RefreshToken)
	if err := e.checkIssued(rec.AccessToken); err != nil {
		t.Fatalf("the stored token: %v", err)
	}
	// It is one the test saw, or one issued for a refresh that was in
	// flight when the daemon died, hence no older than the last one seen.
	if !slices.Contains(seen, rec.AccessToken) && issuedAt(t, rec.AccessToken) < issuedAt(t, seen[len(seen)-1]) {
		t.Errorf("the stored token is neither one served nor newer than the last one served")
	}

	// A new daemon replaces the dead one's socket and serves the stored
	// token without a token request.
	requests = e.requests()
	d := e.start()
	if got := d.get(t, "ci"); got.AccessToken != rec.AccessToken {
		t.Errorf("the daemon after kill -9 serves another token than the stored one")
	}
	if got := e.requests(); got != requests {
		t.Errorf("the daemon after kill -9 made %d token requests, want 0", got-requests)
	}
}

// issuedAt returns the iat claim of a JWT.
func issuedAt(t *testing.T, tok string) int64 {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		t.Fatalf("token without iat: %v", err)
	}
	return iat.Unix()
}

// leak reports how data reveals secret, or "" if it does not: in clear, a
// JWT's signature part alone, or base64-encoded at any byte alignment (as
// a []byte field of a JSON record would be).
func leak(data []byte, secret string) string {
	if bytes.Contains(data, []byte(secret)) {
		return "in clear"
	}
	if i := strings.LastIndexByte(secret, '.'); i > 0 && len(secret)-i > 16 && bytes.Contains(data, []byte(secret[i+1:])) {
		return "its JWT signature in clear"
	}
	for k := range 3 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			b64 := enc.EncodeToString([]byte(secret[k:]))
			if len(b64) > 8 && bytes.Contains(data, []byte(b64[:len(b64)-4])) {
				return "base64-encoded"
			}
		}
	}
	return ""
}

// TestDamagedState starts a daemon on a state directory it cannot fully
// read: it says so in its log, keeps running and fetches what it lost.
// With the sealing key in systemd's credentials directory, it serves its
// stored tokens across a restart as with a generated key.
func TestDamagedState(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before prepares e before the daemon under test starts; it
		// returns the token that daemon must not serve, if any.
		before func(t *testing.T, e *env) (lost string)
		// logLine is in the daemon's log.
		logLine string
		// requests is the number of token requests the get causes.
		requests int
	}{
		{
			name: "database file is garbage",
			before: func(t *testing.T, e *env) string {
				if err := os.MkdirAll(e.stateDir, 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(e.stateDir, store.DBFileName), bytes.Repeat([]byte("not bbolt "), 1000), 0o600)
				return ""
			},
			logLine:  "database is damaged; moved it aside",
			requests: 1,
		},
		{
			name: "records sealed under another key",
			before: func(t *testing.T, e *env) string {
				d := e.start()
				old := d.get(t, "ci").AccessToken
				if err := d.stop(); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(e.stateDir, store.KeyFileName), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
				return old
			},
			logLine:  "stored token unreadable",
			requests: 1,
		},
		{
			name: "key from the credentials directory",
			before: func(t *testing.T, e *env) string {
				e.credDir = t.TempDir()
				writeFile(t, filepath.Join(e.credDir, store.KeyFileName), []byte(strings.Repeat("cd", 32)+"\n"), 0o400)
				d := e.start()
				d.get(t, "ci")
				if err := d.stop(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(e.stateDir, store.KeyFileName)); !os.IsNotExist(err) {
					t.Errorf("a key was generated in the state directory beside the credential: %v", err)
				}
				return ""
			},
			logLine:  "key=credentials",
			requests: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(e.jwtProfile("ci"))
			lost := tc.before(t, e)
			from := e.logs.Len()
			requests := e.requests()
			d := e.start()
			e.logs.waitFor(t, from, tc.logLine)
			tok := d.get(t, "ci").AccessToken
			e.verifyIssued(t, tok)
			if lost != "" && tok == lost {
				t.Errorf("the daemon serves a token it could not have read")
			}
			if got := e.requests() - requests; got != tc.requests {
				t.Errorf("the daemon made %d token requests, want %d", got, tc.requests)
			}
		})
	}
}
