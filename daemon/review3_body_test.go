package daemon

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/config"
)

// TestBodyReadFailureIsNotTooLarge shows that a request body the routes
// that read one (import, git's refusal) cannot read is answered for what
// went wrong: 413 only when it is larger than apitype.MaxRequestBody; a
// malformed or cut-short body is the client's mistake (400), one that
// does not arrive in time a timeout (408). All were answered 413 "larger
// than 1048576 bytes", which sent a client looking for the wrong problem.
func TestBodyReadFailureIsNotTooLarge(t *testing.T) {
	routes := []struct{ name, head string }{
		{"import", "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\n"},
		{"git refused", "POST /v1/git/refused?url=https://git.example.com/team/repo HTTP/1.1\r\nHost: tokd\r\n"},
	}
	for _, rt := range routes {
		for _, tc := range []struct {
			name string
			// rest follows the route's request line and Host field.
			rest string
			// cut closes the client's writing half after rest.
			cut    bool
			status int
		}{
			{name: "malformed chunk", rest: "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", status: http.StatusBadRequest},
			{name: "cut short", rest: "Content-Length: 100\r\n\r\n{\"refused\":", cut: true, status: http.StatusBadRequest},
			{name: "not in time", rest: "Content-Length: 100\r\n\r\n{\"refused\":", status: http.StatusRequestTimeout},
			{name: "too large", rest: "Transfer-Encoding: chunked\r\n\r\n" + chunks(apitype.MaxRequestBody+1) + "0\r\n\r\n", status: http.StatusRequestEntityTooLarge},
		} {
			t.Run(rt.name+"/"+tc.name, func(t *testing.T) {
				s := newTestServer(t, newTestTokens())
				if tc.name == "not in time" {
					// A deadline already due: the body's read times out at
					// once, with no wait.
					s.readTimeout = time.Nanosecond
				}
				cfg := testConfig()
				cfg.Profiles["open"].Git = &config.Git{URLs: []string{"https://git.example.com/team/"}, Username: "oauth2"}
				s.api.config.Store(cfg)
				c, _ := connect(t, s, rootCred)
				go func() {
					io.WriteString(c, rt.head+tc.rest)
					if tc.cut {
						c.(interface{ CloseWrite() error }).CloseWrite()
					}
				}()
				resp, body := readAnswer(t, bufio.NewReader(c), false)
				checkCommon(t, resp, body)
				if resp.StatusCode != tc.status {
					t.Errorf("status %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(body)), tc.status)
				}
			})
		}
	}
}

// chunks returns n bytes of 'x' as a chunked body's chunks.
func chunks(n int) string {
	const size = 32 << 10
	var b strings.Builder
	for n > 0 {
		k := min(n, size)
		b.WriteString(strconv.FormatInt(int64(k), 16) + "\r\n" + strings.Repeat("x", k) + "\r\n")
		n -= k
	}
	return b.String()
}
