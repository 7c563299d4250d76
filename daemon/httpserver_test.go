package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/token"
)

// These tests drive httpServer with raw bytes over a socket pair, a
// connection whose peer credentials the test chooses, and a fake cache.

// waitLimit bounds every wait of these tests; reaching it is a failure.
const waitLimit = 20 * time.Second

// testTokens is a cache with one token for every configured profile, that
// can be told to hold nothing (every request then asks Get) and to make
// Get wait.
type testTokens struct {
	tok      token.Token
	profiles []string

	mu       sync.Mutex
	noHeld   bool          // Held answers nothing
	gate     chan struct{} // when set, Get waits for it to close, or for its context
	waiting  chan struct{} // receives when a Get starts waiting on gate
	getErr   error         // the context error a waiting Get returned
	imported [][]byte
}

func newTestTokens() *testTokens {
	return &testTokens{
		tok: token.Token{
			AccessToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl-_", TokenType: "Bearer",
			RefreshToken: "never-served", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 600700000, time.UTC),
		},
		profiles: []string{"open", "closed", "bygid", "wait"},
		waiting:  make(chan struct{}, 16),
	}
}

func (f *testTokens) known(p string) bool { return slices.Contains(f.profiles, p) }

func (f *testTokens) servable() *token.Token {
	t := f.tok
	t.RefreshToken = ""
	return &t
}

func (f *testTokens) Get(ctx context.Context, p string) (*token.Token, error) {
	if !f.known(p) {
		return nil, fmt.Errorf("profile %s: %w", p, cache.ErrUnknownProfile)
	}
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil && p == "wait" {
		f.waiting <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			f.mu.Lock()
			f.getErr = ctx.Err()
			f.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	return f.servable(), nil
}

func (f *testTokens) Held(p string) (*token.Token, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noHeld || !f.known(p) || p == "wait" {
		return nil, false
	}
	return f.servable(), true
}

func (f *testTokens) Refresh(ctx context.Context, p string) (*token.Token, error) {
	return f.Get(ctx, p)
}
func (f *testTokens) Forget(string) error                        { return nil }
func (f *testTokens) ForgetRefused(string, string) (bool, error) { return false, nil }
func (f *testTokens) Import(p string, tok *token.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imported = append(f.imported, []byte(tok.AccessToken))
	return nil
}
func (f *testTokens) Status() []cache.ProfileStatus {
	var st []cache.ProfileStatus
	for _, p := range f.profiles {
		st = append(st, cache.ProfileStatus{Name: p, State: cache.StateValid})
	}
	return st
}

// testConfig allows "open" to uid 1000, "bygid" to gid 77, "closed" to
// root and the daemon's user only.
func testConfig() *config.Config {
	return &config.Config{Profiles: map[string]*config.Profile{
		"open":   {Name: "open", AllowedUIDs: []uint32{1000}},
		"closed": {Name: "closed"},
		"bygid":  {Name: "bygid", AllowedGIDs: []uint32{77}},
		"wait":   {Name: "wait", AllowedUIDs: []uint32{1000}},
	}}
}

// The callers of these tests.
var (
	rootCred  = &PeerCred{PID: 1, UID: 0, GID: 0}
	otherCred = &PeerCred{PID: 2, UID: 1000, GID: 1000}
)

// newTestServer returns a socket server for tokens with testConfig; the
// daemon's own uid is 4242.
func newTestServer(t testing.TB, tokens Tokens) *httpServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	m := newMetrics(log)
	cfg := testConfig()
	m.setProfiles(cfg.ProfileNames())
	return newHTTPServer(newServer(tokens, cfg, 4242, time.Now, log, m), log)
}

// socketPair returns the two ends of a Unix stream socket pair.
func socketPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// connect serves one end of a new socket pair as a connection from cred
// (none when nil) and returns the other end, and a channel closed when
// the server is done with the connection.
func connect(t testing.TB, s *httpServer, cred *PeerCred) (net.Conn, <-chan struct{}) {
	t.Helper()
	srvEnd, cliEnd := socketPair(t)
	c := &conn{srv: s, nc: srvEnd}
	if !s.track(c) {
		t.Fatal("the server refused a connection")
	}
	ctx := context.Background()
	if cred != nil {
		ctx = context.WithValue(ctx, peerCredKey{}, cred)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx)
	}()
	t.Cleanup(func() {
		cliEnd.Close()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Errorf("the server did not let go of a closed connection within %v", waitLimit)
		}
	})
	cliEnd.SetDeadline(time.Now().Add(waitLimit))
	return cliEnd, done
}

// readAnswer reads one answer; head says it answers a HEAD request.
func readAnswer(t testing.TB, br *bufio.Reader, head bool) (*http.Response, []byte) {
	t.Helper()
	var req *http.Request
	if head {
		req = &http.Request{Method: "HEAD"}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading an answer's body: %v", err)
	}
	return resp, body
}

// checkCommon fails unless resp carries what every answer carries: the
// API version, Cache-Control: no-store, and for an error a JSON
// {"error": ...} body.
func checkCommon(t testing.TB, resp *http.Response, body []byte) {
	t.Helper()
	if got := resp.Header.Get(apitype.VersionHeader); got != apitype.Version {
		t.Errorf("answer %d: %s = %q, want %q", resp.StatusCode, apitype.VersionHeader, got, apitype.Version)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("answer %d: Cache-Control = %q, want no-store", resp.StatusCode, got)
	}
	if resp.StatusCode < 300 {
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer %d: Content-Type = %q, want application/json", resp.StatusCode, ct)
	}
	var er apitype.ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil || er.Error == "" {
		t.Errorf("answer %d: body %q is not {\"error\": ...}", resp.StatusCode, body)
	}
}

// tokenBody is the body of the token answer for profile, as writeToken
// writes it.
func tokenBody(t testing.TB, f *testTokens, profile string) string {
	t.Helper()
	b, err := json.Marshal(apiToken(profile, f.servable()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// answer is what a test expects of one answer.
type answer struct {
	status int
	body   string // a substring of the body; "" for no check
	head   bool   // the answer to a HEAD request
}

// TestConnAnswers sends raw requests and checks every answer: its status,
// the headers every answer carries, its body, and whether the server
// keeps the connection (proved by serving one more request on it) or
// closes it.
func TestConnAnswers(t *testing.T) {
	get := "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n"
	f := newTestTokens()
	tok := tokenBody(t, f, "open")
	big := strings.Repeat("x", 20<<10)
	chunkedImport := func(body string) string {
		return "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: chunked\r\n\r\n" + body
	}
	for _, tc := range []struct {
		name    string
		cred    *PeerCred // rootCred when nil
		noCred  bool      // the connection's credentials are unknown
		in      string
		want    []answer
		closes  bool   // the server closes the connection after the answers
		connHdr string // the last answer's Connection field, when it does not close
	}{
		{name: "get", in: get, want: []answer{{200, tok, false}}},
		{name: "get, LF line ends", in: "GET /v1/token/open HTTP/1.1\nHost: tokd\n\n", want: []answer{{200, tok, false}}},
		{name: "get with the version header", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nTokd-Api-Version: 1\r\n\r\n", want: []answer{{200, tok, false}}},
		{name: "pipelined", in: get + "GET /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n" + get,
			want: []answer{{200, tok, false}, {200, `"version":"1"`, false}, {200, tok, false}}},
		{name: "Connection: close", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nConnection: close\r\n\r\n",
			want: []answer{{200, tok, false}}, closes: true},
		{name: "requests after Connection: close are not answered",
			in:   "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nConnection: close\r\n\r\n" + get,
			want: []answer{{200, `"version"`, false}}, closes: true},
		{name: "HTTP/1.0 closes", in: "GET /v1/token/open HTTP/1.0\r\n\r\n", want: []answer{{200, tok, false}}, closes: true},
		{name: "HTTP/1.0 keep-alive", in: "GET /v1/token/open HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			want: []answer{{200, tok, false}}, connHdr: "keep-alive"},
		{name: "HTTP/1.2 is answered as 1.1", in: "GET /v1/token/open HTTP/1.2\r\nHost: tokd\r\n\r\n", want: []answer{{200, tok, false}}},
		{name: "absolute-form target", in: "GET http://tokd/v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{200, `"version"`, false}}},
		{name: "HEAD", in: "HEAD /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{200, "", true}}},
		{name: "small body on a get is read and dropped", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nContent-Length: 5\r\n\r\nhello",
			want: []answer{{200, tok, false}}},
		{name: "Content-Length twice, the same", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
			want: []answer{{400, "app_access_token", false}}},
		{name: "chunked body", in: chunkedImport("2\r\n{}\r\n0\r\n\r\n"), want: []answer{{400, "app_access_token", false}}},
		{name: "chunked body with extensions and trailer", in: chunkedImport("1;a=b\r\n{\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n"),
			want: []answer{{400, "app_access_token", false}}},

		// Refused by the API's checks: the connection stays.
		{name: "origin", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nOrigin: https://evil.example\r\n\r\n",
			want: []answer{{403, "Origin or Referer", false}}},
		{name: "referer", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nReferer: https://evil.example/\r\n\r\n",
			want: []answer{{403, "Origin or Referer", false}}},
		{name: "other API version", in: "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nTokd-Api-Version: 2\r\n\r\n",
			want: []answer{{400, "API version", false}}},
		{name: "denied profile", cred: otherCred, in: "GET /v1/token/closed HTTP/1.1\r\nHost: tokd\r\n\r\n",
			want: []answer{{403, "may not use it", false}}},
		{name: "allowed profile", cred: otherCred, in: get, want: []answer{{200, tok, false}}},
		{name: "no peer credentials", noCred: true, in: get, want: []answer{{403, "cannot identify the caller", false}}},
		{name: "unknown profile", in: "GET /v1/token/nosuch HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{404, `no profile \"nosuch\"`, false}}},
		{name: "escaped profile", in: "GET /v1/token/op%65n HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{200, tok, false}}},
		{name: "unclean path", in: "GET /v1/token/../status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{404, "no such API path", false}}},
		{name: "unknown path", in: "GET /v1/nosuch HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{404, "no such API path", false}}},

		// Refused by the server: it answers and closes.
		{name: "request line without a version", in: "GET /v1/status\r\n\r\n", want: []answer{{400, "request line", false}}, closes: true},
		{name: "request line with two spaces", in: "GET  /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{400, "request line", false}}, closes: true},
		{name: "method not a token", in: "G(T /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{400, "method", false}}, closes: true},
		{name: "empty line first", in: "\r\n" + get, want: []answer{{400, "request line", false}}, closes: true},
		{name: "lower-case protocol", in: "GET /v1/status http/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{400, "HTTP version", false}}, closes: true},
		{name: "HTTP/2.0", in: "GET /v1/status HTTP/2.0\r\nHost: tokd\r\n\r\n", want: []answer{{505, "HTTP version", false}}, closes: true},
		{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: []answer{{505, "HTTP version", false}}, closes: true},
		{name: "control character in the target", in: "GET /v1/sta\x01tus HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{400, "target", false}}, closes: true},
		{name: "malformed target", in: "GET v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n", want: []answer{{400, "target", false}}, closes: true},
		{name: "no Host", in: "GET /v1/status HTTP/1.1\r\n\r\n", want: []answer{{400, "Host", false}}, closes: true},
		{name: "two Hosts", in: "GET /v1/status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", want: []answer{{400, "Host", false}}, closes: true},
		{name: "malformed Host", in: "GET /v1/status HTTP/1.1\r\nHost: a b\r\n\r\n", want: []answer{{400, "Host", false}}, closes: true},
		{name: "header line without colon", in: "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-Nothing\r\n\r\n", want: []answer{{400, "header line", false}}, closes: true},
		{name: "space before the colon", in: "GET /v1/status HTTP/1.1\r\nHost : tokd\r\n\r\n", want: []answer{{400, "field name", false}}, closes: true},
		{name: "folded line", in: "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-A: 1\r\n  2\r\n\r\n", want: []answer{{400, "header", false}}, closes: true},
		{name: "control character in a value", in: "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-A: 1\x002\r\n\r\n", want: []answer{{400, "control character", false}}, closes: true},
		{name: "bare CR in a value", in: "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-A: 1\r2\r\n\r\n", want: []answer{{400, "control character", false}}, closes: true},
		{name: "header fields over 16 KiB", in: "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-Big: " + big + "\r\n\r\n",
			want: []answer{{431, "16 KiB", false}}, closes: true},
		{name: "request line over 16 KiB", in: "GET /v1/token/" + big + " HTTP/1.1\r\nHost: tokd\r\n\r\n",
			want: []answer{{431, "16 KiB", false}}, closes: true},
		{name: "Content-Length not a number", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 1x\r\n\r\n",
			want: []answer{{400, "Content-Length", false}}, closes: true},
		{name: "Content-Length negative", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: -1\r\n\r\n",
			want: []answer{{400, "Content-Length", false}}, closes: true},
		{name: "Content-Length a list", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 2, 2\r\n\r\n{}",
			want: []answer{{400, "Content-Length", false}}, closes: true},
		{name: "Content-Length too large to parse", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 9999999999999999999\r\n\r\n",
			want: []answer{{400, "Content-Length", false}}, closes: true},
		{name: "two different Content-Lengths", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
			want: []answer{{400, "Content-Length", false}}, closes: true},
		{name: "gzip transfer coding", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			want: []answer{{501, "transfer encoding", false}}, closes: true},
		{name: "chunked twice", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: []answer{{501, "transfer encoding", false}}, closes: true},
		{name: "chunked and Content-Length", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
			want: []answer{{400, "both", false}}, closes: true},
		{name: "chunked in HTTP/1.0", in: "POST /v1/token/open/import HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: []answer{{400, "HTTP/1.0", false}}, closes: true},
		{name: "unknown expectation", in: "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
			want: []answer{{417, "Expect", false}}, closes: true},

		// Bodies the handler does not read to the end: the connection
		// closes after the answer.
		{name: "import body over 1 MiB", in: fmt.Sprintf("POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: %d\r\n\r\n%s", 2<<20, strings.Repeat("{", 2<<20)),
			want: []answer{{413, "larger than", false}}, closes: true},
		{name: "malformed chunk size", in: chunkedImport("zz\r\n{}\r\n0\r\n\r\n"), want: []answer{{400, "malformed", false}}, closes: true},
		{name: "chunks with too much framing", in: chunkedImport(strings.Repeat("1;x="+strings.Repeat("e", 3000)+"\r\n{\r\n", 8) + "0\r\n\r\n"),
			want: []answer{{400, "malformed", false}}, closes: true},
		{name: "chunks with some framing", in: chunkedImport(strings.Repeat("1;x="+strings.Repeat("e", 1000)+"\r\n{\r\n", 8) + "0\r\n\r\n"),
			want: []answer{{400, "", false}}},
		{name: "body on a get over 256 KiB", in: fmt.Sprintf("GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nContent-Length: %d\r\n\r\n", 1<<20),
			want: []answer{{200, tok, false}}, closes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, f)
			cred := tc.cred
			if cred == nil {
				cred = rootCred
			}
			if tc.noCred {
				cred = nil
			}
			c, done := connect(t, s, cred)
			go func() {
				// The server may answer and close before it has read all.
				io.WriteString(c, tc.in)
			}()
			br := bufio.NewReader(c)
			var last *http.Response
			for i, w := range tc.want {
				resp, body := readAnswer(t, br, w.head)
				checkCommon(t, resp, body)
				if resp.StatusCode != w.status {
					t.Fatalf("answer %d: status %d, want %d; body %s", i, resp.StatusCode, w.status, body)
				}
				if w.status == 200 && w.body == tok && string(body) != tok {
					t.Errorf("answer %d: body\n%s\nwant\n%s", i, body, tok)
				}
				if !strings.Contains(string(body), w.body) {
					t.Errorf("answer %d: body %s, want it to hold %s", i, body, w.body)
				}
				if w.head && (len(body) != 0 || resp.ContentLength <= 0) {
					t.Errorf("answer %d to HEAD: Content-Length %d and a body of %d bytes, want a length and no body", i, resp.ContentLength, len(body))
				}
				last = resp
			}
			// net/http's reader turns Connection: close into Close.
			got := last.Header.Get("Connection")
			if last.Close {
				got = "close"
			}
			if want := map[bool]string{true: "close", false: tc.connHdr}[tc.closes]; got != want {
				t.Errorf("Connection = %q, want %q", got, want)
			}
			if tc.closes {
				if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
					t.Fatalf("after the answers: read %d bytes, %v; want the server to close the connection", n, err)
				}
				c.Close() // a server lingering on a refused request sees the close
				select {
				case <-done:
				case <-time.After(waitLimit):
					t.Fatal("the server did not end the connection")
				}
				return
			}
			// The connection still serves.
			io.WriteString(c, get)
			if resp, body := readAnswer(t, br, false); resp.StatusCode != tc.want[0].status && tc.noCred || resp.StatusCode != 200 && !tc.noCred {
				t.Errorf("a get on the kept connection: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestExpectContinue sends a body only once the server asks for it.
func TestExpectContinue(t *testing.T) {
	s := newTestServer(t, newTestTokens())
	c, _ := connect(t, s, rootCred)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	resp, _ := readAnswer(t, br, false)
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %d, want 100", resp.StatusCode)
	}
	io.WriteString(c, "{}")
	resp, body := readAnswer(t, br, false)
	checkCommon(t, resp, body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "app_access_token") {
		t.Errorf("answer %d %s, want the import's 400", resp.StatusCode, body)
	}

	// A route that reads no body does not ask for it, and the connection
	// closes after the answer: the client may still send it.
	io.WriteString(c, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	resp, body = readAnswer(t, br, false)
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("answer %d (close %v) %s, want 200 and Connection: close", resp.StatusCode, resp.Close, body)
	}
}

// TestFastPathAnswersAsTheHandler shows that the fast path's answer is,
// byte for byte but for the Date, the answer of the API's handler (the
// slow path, taken when the cache holds nothing to serve at once), for
// tokens that need JSON escaping and for those that do not.
func TestFastPathAnswersAsTheHandler(t *testing.T) {
	for _, tc := range []struct {
		name   string
		access string
		typ    string
		expiry time.Time
	}{
		{"plain", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"nanoseconds", "abc", "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 120, time.UTC)},
		{"other zone", "abc", "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))},
		{"HTML characters", "a<b>&c", "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"quote and backslash", `a"b\c`, "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"not ASCII", "a\u2028é", "Bearer", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := map[bool]string{}
			for _, held := range []bool{true, false} {
				f := newTestTokens()
				f.tok.AccessToken, f.tok.TokenType, f.tok.Expiry = tc.access, tc.typ, tc.expiry
				f.noHeld = !held
				c, _ := connect(t, newTestServer(t, f), rootCred)
				io.WriteString(c, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nConnection: close\r\n\r\n")
				raw, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				answers[held] = dateRE.ReplaceAllString(string(raw), "Date: (date)\r\n")
			}
			if diff := cmp.Diff(answers[false], answers[true]); diff != "" {
				t.Errorf("the fast path's answer differs from the handler's (-handler +fast):\n%s", diff)
			}
			if !strings.HasPrefix(answers[true], "HTTP/1.1 200 OK\r\n") {
				t.Errorf("answer:\n%s", answers[true])
			}
		})
	}
}

// dateRE matches an answer's Date field.
var dateRE = regexp.MustCompile("Date: [^\r]*\r\n")

// TestTimeouts shows the head and idle timeouts: a connection that sends
// nothing is closed without an answer, one that sends part of a head gets
// a 408, and a kept connection is closed once idle.
func TestTimeouts(t *testing.T) {
	f := newTestTokens()
	for _, tc := range []struct {
		name   string
		send   string
		status int // 0: closed without an answer
	}{
		{"nothing sent", "", 0},
		{"part of a head", "GET /v1/token/open HTTP/1.1\r\nHost: tok", http.StatusRequestTimeout},
		{"idle after a request", "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, f)
			s.readHeaderTimeout, s.idleTimeout = 50*time.Millisecond, 50*time.Millisecond
			c, _ := connect(t, s, rootCred)
			io.WriteString(c, tc.send)
			br := bufio.NewReader(c)
			if tc.status != 0 {
				resp, body := readAnswer(t, br, false)
				checkCommon(t, resp, body)
				if resp.StatusCode != tc.status {
					t.Errorf("answer %d %s, want %d", resp.StatusCode, body, tc.status)
				}
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("read %d bytes, %v; want EOF once the server closes the connection", n, err)
			}
		})
	}
}

// listen serves s on a socket in a new directory; Serve's result goes to
// the channel returned.
func listen(t *testing.T, s *httpServer) (string, <-chan error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "th-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
	})
	return path, served
}

func dial(t *testing.T, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	return c, bufio.NewReader(c)
}

// TestShutdown shows http.Server's shutdown: the listener closes, an idle
// connection is closed, a request in flight (waiting for a token) is
// answered with Connection: close, and Shutdown returns only then.
func TestShutdown(t *testing.T) {
	f := newTestTokens()
	f.gate = make(chan struct{})
	s := newTestServer(t, f)
	path, served := listen(t, s)

	idle, idleR := dial(t, path)
	io.WriteString(idle, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n")
	if resp, _ := readAnswer(t, idleR, false); resp.StatusCode != 200 {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	busy, busyR := dial(t, path)
	io.WriteString(busy, "GET /v1/token/wait HTTP/1.1\r\nHost: tokd\r\n\r\n")
	<-f.waiting

	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()
	if n, err := idleR.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %d bytes, %v; want EOF", n, err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted during shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	default:
	}
	close(f.gate)
	resp, body := readAnswer(t, busyR, false)
	if resp.StatusCode != 200 || !resp.Close || string(body) != tokenBody(t, f, "wait") {
		t.Errorf("the request in flight: %d (close %v) %s; want its token and Connection: close", resp.StatusCode, resp.Close, body)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// TestShutdownTwice shows that a second Shutdown, here one whose context
// has ended, does not take the drain away from the first: the first still
// returns once the request in flight has finished.
func TestShutdownTwice(t *testing.T) {
	f := newTestTokens()
	f.gate = make(chan struct{})
	s := newTestServer(t, f)
	path, served := listen(t, s)
	busy, busyR := dial(t, path)
	io.WriteString(busy, "GET /v1/token/wait HTTP/1.1\r\nHost: tokd\r\n\r\n")
	<-f.waiting

	first := make(chan error, 1)
	go func() { first <- s.Shutdown(context.Background()) }()
	<-served // the first Shutdown has begun: it closed the listener
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("second Shutdown = %v, want context.Canceled", err)
	}
	close(f.gate)
	if resp, _ := readAnswer(t, busyR, false); resp.StatusCode != 200 {
		t.Errorf("the request in flight: %d, want 200", resp.StatusCode)
	}
	select {
	case err := <-first:
		if err != nil {
			t.Errorf("first Shutdown = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first Shutdown did not return after the last request finished")
	}
}

// TestShutdownBoundedByContext shows that Shutdown gives up when its
// context ends, leaving the request in flight to finish.
func TestShutdownBoundedByContext(t *testing.T) {
	f := newTestTokens()
	f.gate = make(chan struct{})
	defer close(f.gate)
	s := newTestServer(t, f)
	path, _ := listen(t, s)
	busy, _ := dial(t, path)
	io.WriteString(busy, "GET /v1/token/wait HTTP/1.1\r\nHost: tokd\r\n\r\n")
	<-f.waiting
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
}

// TestClientGoneEndsTheWait shows that a request waiting for a token ends
// when its client closes the connection, as with net/http.
func TestClientGoneEndsTheWait(t *testing.T) {
	f := newTestTokens()
	f.gate = make(chan struct{})
	defer close(f.gate)
	c, done := connect(t, newTestServer(t, f), rootCred)
	io.WriteString(c, "GET /v1/token/wait HTTP/1.1\r\nHost: tokd\r\n\r\n")
	<-f.waiting
	c.Close()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("the request still waits after its client went away")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !errors.Is(f.getErr, context.Canceled) {
		t.Errorf("the waiting Get ended with %v, want context.Canceled", f.getErr)
	}
}

// TestPipelinedDuringWait shows that a request pipelined while the one
// before it waits for a token is answered after it, in order.
func TestPipelinedDuringWait(t *testing.T) {
	f := newTestTokens()
	f.gate = make(chan struct{})
	c, _ := connect(t, newTestServer(t, f), rootCred)
	io.WriteString(c, "GET /v1/token/wait HTTP/1.1\r\nHost: tokd\r\n\r\n")
	<-f.waiting
	io.WriteString(c, "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n")
	close(f.gate)
	br := bufio.NewReader(c)
	for _, p := range []string{"wait", "open"} {
		resp, body := readAnswer(t, br, false)
		if resp.StatusCode != 200 || string(body) != tokenBody(t, f, p) {
			t.Errorf("answer for %s: %d %s", p, resp.StatusCode, body)
		}
	}
}

// TestSupplementaryGroupsReadOnDemand shows that a caller's supplementary
// groups are read only when a profile's allowed_gids decide, once per
// connection, whatever the configuration is reloaded to.
func TestSupplementaryGroupsReadOnDemand(t *testing.T) {
	reads := 0
	cred := &PeerCred{UID: 1000, GID: 1000, readGroups: func() []uint32 { reads++; return []uint32{5, 77} }}
	s := newTestServer(t, newTestTokens()).api
	for _, tc := range []struct {
		profile string
		allowed bool
		reads   int
	}{
		{"open", true, 0},    // by uid
		{"closed", false, 0}, // no allowed_gids: nothing to read
		{"bygid", true, 1},   // by a supplementary group
		{"bygid", true, 1},   // read once
	} {
		if got := s.allowed(cred, tc.profile); got != tc.allowed || reads != tc.reads {
			t.Errorf("allowed(%s) = %v after %d reads of the groups, want %v after %d", tc.profile, got, reads, tc.allowed, tc.reads)
		}
	}
	// A reload that gives a profile allowed_gids takes effect on a
	// connection opened before it.
	fresh := &PeerCred{UID: 1000, GID: 1000, readGroups: func() []uint32 { return []uint32{88} }}
	if s.allowed(fresh, "closed") {
		t.Fatal("closed allowed before the reload")
	}
	cfg := testConfig()
	cfg.Profiles["closed"].AllowedGIDs = []uint32{88}
	s.setConfig(cfg)
	if !s.allowed(fresh, "closed") {
		t.Error("closed not allowed by gid 88 after the reload")
	}
}

// TestPeerGroupsOfARealConnection reads SO_PEERCRED and SO_PEERGROUPS of
// a real connection: this process's.
func TestPeerGroupsOfARealConnection(t *testing.T) {
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()
	cred, err := readPeerCred(a)
	if err != nil {
		t.Fatal(err)
	}
	if cred.UID != uint32(os.Getuid()) || cred.GID != uint32(os.Getgid()) || cred.PID != int32(os.Getpid()) {
		t.Errorf("peer credentials %+v, want this process's", cred)
	}
	want, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got := cred.supplementaryGroups()
	var wantU []uint32
	for _, g := range want {
		wantU = append(wantU, uint32(g))
	}
	slices.Sort(got)
	slices.Sort(wantU)
	if !slices.Equal(got, wantU) {
		t.Errorf("supplementary groups %v, want %v", got, wantU)
	}
}

// TestHeadEnd feeds heads a byte at a time: the end is found exactly when
// the empty line is complete, whatever the line ends, and not moved by
// what follows it.
func TestHeadEnd(t *testing.T) {
	for _, head := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\n\r\n",
		"GET / HTTP/1.1\nHost: a\r\n\n",
		"GET / HTTP/1.0\r\n\r\n",
		"\n\n",
	} {
		from := 0
		for n := 1; n <= len(head); n++ {
			got := headEnd([]byte(head[:n]), &from)
			if want := map[bool]int{true: len(head)}[n == len(head)]; got != want {
				t.Errorf("%q after %d bytes: end %d, want %d", head, n, got, want)
			}
		}
		from = 0
		if got := headEnd([]byte(head+"GET / HTTP/1.1\r\n\r\n"), &from); got != len(head) {
			t.Errorf("%q and another head: end %d, want %d", head, got, len(head))
		}
	}
}

// TestParseHead checks what the parser takes from valid heads.
func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		head string
		want string // the fields printed by describe
	}{
		{"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", "GET /a 1 host=h cl=-1 close=false"},
		{"get /a HTTP/1.1\r\nhOsT:h\r\n\r\n", "get /a 1 host=h cl=-1 close=false"},
		{"GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", "GET /a 1 host=h cl=-1 close=true"},
		{"GET /a HTTP/1.0\r\n\r\n", "GET /a 0 host= cl=-1 close=true"},
		{"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET /a 0 host= cl=-1 close=false keepalive10"},
		{"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length:  12 \r\n\r\n", "POST /a 1 host=h cl=12 close=false"},
		{"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nExpect: 100-Continue\r\n\r\n", "POST /a 1 host=h cl=0 close=false"},
		{"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", "POST /a 1 host=h cl=3 close=false expect"},
		{"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", "POST /a 1 host=h cl=-1 close=false chunked"},
		{"GET /a HTTP/1.1\r\nHost: h\r\nOrigin:\r\nOrigin: x\r\nReferer: r\r\ntokd-api-version: 7\r\n\r\n",
			"GET /a 1 host=h cl=-1 close=false origin= referer=r version=7"},
		{"GET /a HTTP/1.1\r\nHost: [::1]:80\r\nX: \t v \t\r\n\r\n", "GET /a 1 host=[::1]:80 cl=-1 close=false"},
	} {
		var h requestHead
		if err := h.parse([]byte(tc.head)); err != nil {
			t.Errorf("%q: %v", tc.head, err)
			continue
		}
		if got := describe(&h); got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.head, got, tc.want)
		}
	}
}

func describe(h *requestHead) string {
	s := fmt.Sprintf("%s %s %d host=%s cl=%d close=%v", h.method, h.target, h.minor, h.host, h.contentLength, h.close)
	for _, f := range []struct {
		on   bool
		text string
	}{{h.keepAlive10, " keepalive10"}, {h.chunked, " chunked"}, {h.expectContinue, " expect"}} {
		if f.on {
			s += f.text
		}
	}
	if h.origin != nil || h.referer != nil || h.apiVersion != nil {
		s += fmt.Sprintf(" origin=%s referer=%s version=%s", h.origin, h.referer, h.apiVersion)
	}
	return s
}

// BenchmarkServeToken is the server's CPU and allocations per token
// request on a kept connection. In memory: parsing and answering alone,
// on the fast path and on the slow path (the API's handler with an
// http.Request, as when the cache holds no token to serve at once). Over
// a socket pair, with a client that costs little: this server against
// net/http's serving the same handler.
func BenchmarkServeToken(b *testing.B) {
	const req = "GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\nUser-Agent: bench\r\nTokd-Api-Version: 1\r\n\r\n"
	// A query string is something the fast path leaves to the handler.
	const slowReq = "GET /v1/token/open?slow HTTP/1.1\r\nHost: tokd\r\nUser-Agent: bench\r\nTokd-Api-Version: 1\r\n\r\n"
	for _, slow := range []bool{false, true} {
		name, r := "memory/fast", req
		if slow {
			name, r = "memory/slow", slowReq
		}
		b.Run(name, func(b *testing.B) {
			s := newTestServer(b, newTestTokens())
			c := &conn{srv: s, nc: &loopConn{req: []byte(r)}}
			s.track(c)
			c.bufs = connBufferPool.Get().(*connBuffers)
			c.buf, c.out, c.head.fields = c.bufs.read, c.bufs.out[:0], c.bufs.fields[:0]
			c.ctx = context.WithValue(context.Background(), peerCredKey{}, rootCred)
			c.cred = rootCred
			b.ReportAllocs()
			for b.Loop() {
				if !c.serveOne(false) {
					b.Fatal("the connection closed")
				}
			}
		})
	}
	for _, impl := range []string{"tokd", "net-http"} {
		b.Run("socket/"+impl, func(b *testing.B) {
			s := newTestServer(b, newTestTokens())
			srvEnd, cliEnd := socketPair(b)
			defer cliEnd.Close()
			switch impl {
			case "tokd":
				c := &conn{srv: s, nc: srvEnd}
				s.track(c)
				go c.run(context.WithValue(context.Background(), peerCredKey{}, rootCred))
			default:
				hs := &http.Server{Handler: s.handler, ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
					return context.WithValue(ctx, peerCredKey{}, rootCred)
				}}
				go hs.Serve(&oneConnListener{c: srvEnd})
				defer hs.Close()
			}
			buf := make([]byte, 8192)
			raw := []byte(req)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cliEnd.Write(raw); err != nil {
					b.Fatal(err)
				}
				if err := readWholeAnswer(cliEnd, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readWholeAnswer reads one answer framed by Content-Length into buf.
func readWholeAnswer(c net.Conn, buf []byte) error {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		if end := bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 {
			i := bytes.Index(buf[:end], []byte("Content-Length: "))
			if i < 0 {
				return errors.New("no Content-Length")
			}
			j := i + len("Content-Length: ")
			length := 0
			for ; buf[j] >= '0' && buf[j] <= '9'; j++ {
				length = length*10 + int(buf[j]-'0')
			}
			if n >= end+4+length {
				return nil
			}
		}
	}
}

// loopConn is a connection that reads the same request over and over
// and discards what is written to it.
type loopConn struct {
	net.Conn // nil: the methods below are all the server uses
	req      []byte
	off      int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.req[c.off:])
	c.off = (c.off + n) % len(c.req)
	return n, nil
}
func (c *loopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }
func (c *loopConn) RemoteAddr() net.Addr             { return nil }

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	done := l.done
	l.mu.Unlock()
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "pair", Net: "unix"} }
