package daemon

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokd/tokd/token"
)

// panickyTokens is testTokens whose Held panics for the profile "open".
type panickyTokens struct{ *testTokens }

func (p panickyTokens) Held(profile string) (*token.Token, bool) {
	if profile == "open" {
		panic("Held: a bug")
	}
	return p.testTokens.Held(profile)
}

// TestPanicOnTheFastPathSparesTheDaemon shows that a panic on the fast path
// (here in the cache's Held, which the handler path calls under
// net/http's and runHandler's recover) ends the connection with a 500,
// not the process, and the server goes on serving.
func TestPanicOnTheFastPathSparesTheDaemon(t *testing.T) {
	s := newTestServer(t, panickyTokens{newTestTokens()})
	c, done := connect(t, s, rootCred)
	io.WriteString(c, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readAnswer(t, br, false)
	checkCommon(t, resp, body)
	if resp.StatusCode != http.StatusInternalServerError || !resp.Close {
		t.Errorf("answer %d (close %v) %s, want 500 and Connection: close", resp.StatusCode, resp.Close, body)
	}
	<-done
	c2, _ := connect(t, s, rootCred)
	io.WriteString(c2, "GET /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n")
	if resp, body := readAnswer(t, bufio.NewReader(c2), false); resp.StatusCode != 200 || !strings.Contains(string(body), `"version"`) {
		t.Errorf("after the panic: %d %s", resp.StatusCode, body)
	}
}

// TestRefusalReachesAClientStillSending shows that a client still
// writing what the server refused (a head over 16 KiB, an import body
// past its bound) reads the refusal: the server ends its writing half and
// drops what comes, rather than closing under the client, whose writes
// then failed with EPIPE before it read the answer (net/http's client saw
// "broken pipe" in TestRawHTTP's 431 case, one run in three).
func TestRefusalReachesAClientStillSending(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		status   int
	}{
		{"head over 16 KiB", "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-Padding: " + strings.Repeat("x", 20<<10), http.StatusRequestHeaderFieldsTooLarge},
		{"body too large to drop", "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nContent-Length: 1000000\r\n\r\n", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, newTestTokens())
			s.lingerTimeout = waitLimit
			c, done := connect(t, s, rootCred)
			io.WriteString(c, tc.in)
			br := bufio.NewReader(c)
			resp, body := readAnswer(t, br, false)
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("answer %d (close %v) %s, want %d and Connection: close", resp.StatusCode, resp.Close, body, tc.status)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the answer: read %d bytes, %v; want EOF", n, err)
			}
			// The client goes on sending the rest of its request.
			if _, err := c.Write(make([]byte, 64<<10)); err != nil {
				t.Errorf("writing the rest of the request after the answer: %v", err)
			}
			c.Close()
			<-done
		})
	}
}

// revokingTokens is testTokens whose Held first runs revoke, as a reload
// that takes the caller's access away while the fast path looks up the
// token would.
type revokingTokens struct {
	*testTokens
	revoke func()
}

func (r *revokingTokens) Held(profile string) (*token.Token, bool) {
	r.revoke()
	return r.testTokens.Held(profile)
}

// TestFastPathRechecksAccessAfterHeld: a caller whose access a reload
// takes away between the fast path's access check and its lookup of the
// token is refused, as the slow path refuses a caller after its wait.
func TestFastPathRechecksAccessAfterHeld(t *testing.T) {
	rt := &revokingTokens{testTokens: newTestTokens()}
	s := newTestServer(t, rt)
	cfg := testConfig()
	cfg.Profiles["open"].AllowedUIDs = nil
	rt.revoke = func() { s.api.setConfig(cfg) }
	c, _ := connect(t, s, otherCred)
	io.WriteString(c, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n")
	resp, body := readAnswer(t, bufio.NewReader(c), false)
	checkCommon(t, resp, body)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("uid 1000 after a reload took its access during the lookup: %d %s, want 403", resp.StatusCode, body)
	}
}
