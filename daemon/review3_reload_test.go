package daemon_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReloadRevokesAWaitingCaller shows that a caller waiting for a token
// fetch, authorised when it asked, gets no token once a reload has taken
// its access away: the token it waits for is no longer its to have. Every
// route that waits for a fetch is tried, as a caller whose uid the reload
// drops from allowed_uids, and as one whose profile the reload removes.
func TestReloadRevokesAWaitingCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a caller with another uid needs root; run the tests as root to check SO_PEERCRED authorisation")
	}
	routes := []struct{ method, path string }{
		{"GET", "/v1/token/ci"},
		{"POST", "/v1/token/ci/refresh"},
		{"GET", "/v1/git?url=https://git.example.com/team/repo.git"},
		{"GET", "/v1/docker?server=registry.example.com"},
	}
	reloads := []struct {
		name string
		next func(e *env) string
	}{
		{"uid dropped from allowed_uids", func(e *env) string { return ciProfile(e, "allowed_uids = [1000]") + e.jwtProfile("other") }},
		{"profile removed", func(e *env) string { return e.jwtProfile("other") }},
	}
	for _, rl := range reloads {
		for _, rt := range routes {
			t.Run(rl.name+"/"+rt.method+" "+rt.path, func(t *testing.T) {
				e := newEnv(t)
				e.writeConfig(ciProfile(e, fmt.Sprintf("allowed_uids = [1000, %d]", otherUID)), e.jwtProfile("other"))
				if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
					t.Fatal(err)
				}
				// The fetches at start hang, so the caller waits for ci's.
				hang, release := hangFault()
				t.Cleanup(release)
				e.em.SetOutage(hang.fault)
				d := e.start()
				hang.waitTaken(t)

				conn := dialAs(t, d.socket, otherUID)
				defer conn.Close()
				answer := make(chan rawAnswer, 1)
				go func() { answer <- roundTrip(conn, rt.method, rt.path) }()
				waitInObtain(t, 1)

				e.writeConfig(rl.next(e))
				if got := d.reload(t); got != "reloaded" {
					t.Fatalf("reload %s", got)
				}
				release()
				e.em.ClearFaults()

				var a rawAnswer
				select {
				case a = <-answer:
				case <-time.After(waitTimeout):
					t.Fatalf("no answer %v after the fetch was released", waitTimeout)
				}
				if a.err != nil {
					t.Fatalf("%s %s as uid %d: %v", rt.method, rt.path, otherUID, a.err)
				}
				if a.status == http.StatusOK || strings.Contains(a.body, "access_token") {
					e.saw(jsonField(a.body, "access_token"))
					t.Fatalf("%s %s as uid %d after the reload took its access: status %d, a token; want a refusal",
						rt.method, rt.path, otherUID, a.status)
				}
				// The refusal is the one a caller who never had access
				// gets: it does not tell whether the profile exists.
				if want := refusalStatus(rt.path); a.status != want {
					t.Errorf("%s %s as uid %d: status %d (%s), want %d as for any caller without access",
						rt.method, rt.path, otherUID, a.status, strings.TrimSpace(a.body), want)
				}
			})
		}
	}
}

// TestReloadRevokesAnImportInProgress shows that a caller whose access a
// reload takes away while it is still sending a token file to import
// (which it may take the body's read timeout to do) is refused, and its
// token does not become the profile's: the profile's other users would
// be served it.
func TestReloadRevokesAnImportInProgress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a caller with another uid needs root; run the tests as root to check SO_PEERCRED authorisation")
	}
	e := newEnv(t)
	e.writeConfig(importProfile("imp", fmt.Sprintf("allowed_uids = [1000, %d]", otherUID)))
	if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	body, access := tokFile(t, time.Hour)
	e.saw(access)

	status, answer := sendAcrossReload(t, e, d, "POST /v1/token/imp/import", body,
		"github.com/tokd/tokd/daemon.(*server).importToken(", importProfile("imp", "allowed_uids = [1000]"))
	if status != http.StatusForbidden {
		if status == http.StatusOK {
			answer = "" // it holds the token
		}
		t.Errorf("import as uid %d after the reload took its access: status %d (%s), want 403", otherUID, status, answer)
	}
	if tok, err := d.client.Token("imp"); err == nil {
		e.saw(tok.AccessToken)
		if tok.AccessToken == access {
			t.Errorf("profile imp serves the token uid %d imported after it lost access", otherUID)
		}
	}
}

// TestReloadRevokesAGitEraseInProgress shows the same of git's erase: a
// caller that lost its access while it sent the refused secret does not
// make the daemon forget the profile's token.
func TestReloadRevokesAGitEraseInProgress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a caller with another uid needs root; run the tests as root to check SO_PEERCRED authorisation")
	}
	e := newEnv(t)
	e.writeConfig(ciProfile(e, fmt.Sprintf("allowed_uids = [1000, %d]", otherUID)))
	if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	tok := d.get(t, "ci").AccessToken

	status, answer := sendAcrossReload(t, e, d, "POST /v1/git/refused?url=https://git.example.com/team/repo.git",
		[]byte(`{"refused":"`+tok+`"}`), "github.com/tokd/tokd/daemon.(*server).gitForget(", ciProfile(e, "allowed_uids = [1000]"))
	if status != http.StatusNotFound {
		t.Errorf("git refusal as uid %d after the reload took its access: status %d (%s), want 404", otherUID, status, answer)
	}
	if got := d.get(t, "ci").AccessToken; got != tok {
		t.Errorf("profile ci forgot its token for the erase of uid %d, which had lost its access", otherUID)
	}
}

// sendAcrossReload sends request (method and target) with body as uid
// otherUID, the body's second half only once the daemon, reloaded with
// config while frame (the route's handler) waited for it, has finished
// the reload; it returns the answer's status and body.
func sendAcrossReload(t *testing.T, e *env, d *running, request string, body []byte, frame string, config ...string) (int, string) {
	t.Helper()
	conn := dialAs(t, d.socket, otherUID)
	defer conn.Close()
	half := len(body) / 2
	if _, err := fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: tokd\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", request, len(body), body[:half]); err != nil {
		t.Fatal(err)
	}
	// The request is authorised and its handler reads the body.
	waitInFrame(t, frame, 1)
	e.writeConfig(config...)
	if got := d.reload(t); got != "reloaded" {
		t.Fatalf("reload %s", got)
	}
	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, strings.TrimSpace(string(answer))
}

// ciProfile is profile ci with git and docker settings and extra lines.
func ciProfile(e *env, extra ...string) string {
	return e.jwtProfile("ci", append(extra,
		"[profiles.ci.git]", `urls = ["https://git.example.com/team/"]`,
		"[profiles.ci.docker]", `registries = ["registry.example.com"]`)...)
}

// refusalStatus is the status a caller without access to any profile
// gets on path: 403 on the routes that name a profile, 404 on those that
// name a URL or a registry.
func refusalStatus(path string) int {
	if strings.HasPrefix(path, "/v1/token/") {
		return http.StatusForbidden
	}
	return http.StatusNotFound
}

// rawAnswer is one answer read off a connection.
type rawAnswer struct {
	status int
	body   string
	err    error
}

// roundTrip sends one request on conn and reads its answer; it may run
// in any goroutine.
func roundTrip(conn net.Conn, method, path string) rawAnswer {
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: tokd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path); err != nil {
		return rawAnswer{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return rawAnswer{status: resp.StatusCode, body: string(body), err: err}
}

// jsonField returns the string value of a top-level "key" in body, or "".
func jsonField(body, key string) string {
	_, rest, ok := strings.Cut(body, `"`+key+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// waitInObtain waits until n goroutines of this process wait in the
// cache's Get or Refresh (both wait in obtain) for a fetch.
func waitInObtain(t *testing.T, n int) {
	t.Helper()
	waitInFrame(t, "github.com/tokd/tokd/cache.(*Cache).wait(", n)
}
