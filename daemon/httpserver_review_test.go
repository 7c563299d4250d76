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
