package client_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/client"
)

// maxResponse mirrors the client's bound on an answer.
const maxResponse = 4 << 20

// socketPath returns a path for a socket in a new directory short enough
// for sun_path (108 bytes), which t.TempDir often is not.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// recorder is a net.Listener whose connections keep a copy of what the
// server writes, so that tests can see the framing on the wire.
type recorder struct {
	net.Listener
	mu      sync.Mutex // guards written
	written bytes.Buffer
}

func (r *recorder) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, r: r}, nil
}

func (r *recorder) Written() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.written.String()
}

type recordedConn struct {
	net.Conn
	r *recorder
}

func (c *recordedConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.written.Write(b)
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

// serveHTTP serves h with net/http on a new Unix socket and returns a
// client for it and the record of what the server wrote.
func serveHTTP(t *testing.T, h http.Handler) (*client.Client, *recorder) {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Listener: ln}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(rec)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &client.Client{Socket: path, Timeout: 5 * time.Second}, rec
}

// serveRaw accepts connections on a new Unix socket and hands each to
// serve once the request's head has been read. Connections are closed
// when serve returns; stop is closed at cleanup, before the connections
// are, so that serve can wait on it.
func serveRaw(t *testing.T, serve func(c net.Conn, stop <-chan struct{})) *client.Client {
	t.Helper()
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					t.Errorf("server: reading the request: %v", err)
					return
				}
				serve(c, stop)
			}()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		wg.Wait()
	})
	return &client.Client{Socket: path, Timeout: 5 * time.Second}
}

// request is what the server saw of one request.
type request struct {
	Method, Path, Version, ContentType, Body string
}

// fakeDaemon answers like tokd: each route's body as JSON with the
// version header, and records the requests.
type fakeDaemon struct {
	mu       sync.Mutex // guards requests
	requests []request
}

func (d *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	d.requests = append(d.requests, request{
		Method: r.Method, Path: r.URL.EscapedPath(), Version: r.Header.Get(apitype.VersionHeader),
		ContentType: r.Header.Get("Content-Type"), Body: string(body),
	})
	d.mu.Unlock()
	w.Header().Set(apitype.VersionHeader, apitype.Version)
	var answer any
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/token/ci.bot", "POST /v1/token/ci.bot/refresh", "POST /v1/token/ci.bot/import":
		answer = testToken
	case "DELETE /v1/token/ci.bot":
		w.WriteHeader(http.StatusNoContent)
		return
	case "GET /v1/status":
		answer = testStatus
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error": "no route %s %s"}`, r.Method, r.URL.Path)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

func (d *fakeDaemon) Requests() []request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]request(nil), d.requests...)
}

var (
	testExpiry = time.Date(2030, 6, 1, 13, 0, 0, 0, time.UTC)
	testToken  = &apitype.Token{Profile: "ci.bot", AccessToken: "eyJ.access.token", TokenType: "Bearer", ExpiresAt: testExpiry}
	testStatus = &apitype.Status{Version: apitype.Version, Profiles: []apitype.ProfileStatus{
		{Profile: "ci.bot", State: "valid", ExpiresAt: &testExpiry, RefreshToken: true},
		{Profile: "imported", State: "import-needed", LastError: "token endpoint: invalid_grant", LastErrorAt: &testExpiry},
	}}
)

func TestCalls(t *testing.T) {
	tokFile := []byte(`{"access_token": "a", "refresh_token": "r"}`)
	cases := []struct {
		name        string
		call        func(c *client.Client) (any, error)
		want        any
		wantRequest request
	}{
		{
			name:        "Token",
			call:        func(c *client.Client) (any, error) { return c.Token("ci.bot") },
			want:        testToken,
			wantRequest: request{Method: "GET", Path: "/v1/token/ci.bot", Version: apitype.Version},
		},
		{
			name:        "Refresh",
			call:        func(c *client.Client) (any, error) { return c.Refresh("ci.bot") },
			want:        testToken,
			wantRequest: request{Method: "POST", Path: "/v1/token/ci.bot/refresh", Version: apitype.Version, ContentType: "application/json"},
		},
		{
			name:        "Import",
			call:        func(c *client.Client) (any, error) { return c.Import("ci.bot", tokFile) },
			want:        testToken,
			wantRequest: request{Method: "POST", Path: "/v1/token/ci.bot/import", Version: apitype.Version, ContentType: "application/json", Body: string(tokFile)},
		},
		{
			name:        "Forget",
			call:        func(c *client.Client) (any, error) { return nil, c.Forget("ci.bot") },
			want:        nil,
			wantRequest: request{Method: "DELETE", Path: "/v1/token/ci.bot", Version: apitype.Version},
		},
		{
			name:        "Status",
			call:        func(c *client.Client) (any, error) { return c.Status() },
			want:        testStatus,
			wantRequest: request{Method: "GET", Path: "/v1/status", Version: apitype.Version},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{}
			c, _ := serveHTTP(t, d)
			got, err := tc.call(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]request{tc.wantRequest}, d.Requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProfileNameEscaped(t *testing.T) {
	d := &fakeDaemon{}
	c, _ := serveHTTP(t, d)
	_, err := c.Token("a/b c")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("got %v, want a 404 *APIError", err)
	}
	if rs := d.Requests(); len(rs) != 1 || rs[0].Path != "/v1/token/a%2Fb%20c" {
		t.Errorf("requests %+v, want the path /v1/token/a%%2Fb%%20c", rs)
	}
}

func TestAPIErrors(t *testing.T) {
	cases := []struct {
		name          string
		status        int
		body          string
		wantMessage   string
		wantForbidden bool
		wantNotFound  bool
	}{
		{name: "forbidden", status: 403, body: `{"error": "uid 1001 may not use profile ci"}`,
			wantMessage: "uid 1001 may not use profile ci", wantForbidden: true},
		{name: "not found", status: 404, body: `{"error": "no profile \"nope\""}`,
			wantMessage: `no profile "nope"`, wantNotFound: true},
		{name: "server error", status: 502, body: `{"error": "token endpoint: server_error (HTTP 500)"}`,
			wantMessage: "token endpoint: server_error (HTTP 500)"},
		{name: "body not JSON", status: 500, body: "internal error\n",
			wantMessage: "tokd answered HTTP 500"},
		{name: "no error field", status: 409, body: `{"message": "busy"}`,
			wantMessage: "tokd answered HTTP 409"},
		{name: "empty body", status: 403, body: "",
			wantMessage: "tokd answered HTTP 403", wantForbidden: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(apitype.VersionHeader, apitype.Version)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			_, err := c.Token("ci")
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %T %v, want *client.APIError", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Message != tc.wantMessage || err.Error() != tc.wantMessage {
				t.Errorf("got HTTP %d %q, want HTTP %d %q", apiErr.StatusCode, err, tc.status, tc.wantMessage)
			}
			if got := errors.Is(err, client.ErrForbidden); got != tc.wantForbidden {
				t.Errorf("errors.Is(err, ErrForbidden) = %v", got)
			}
			if got := errors.Is(err, client.ErrNotFound); got != tc.wantNotFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v", got)
			}
			if errors.Is(err, client.ErrUnreachable) {
				t.Error("an answer from the daemon matches ErrUnreachable")
			}
		})
	}
}

func TestVersionHeader(t *testing.T) {
	cases := []struct {
		name     string
		version  string // "" sends no header
		status   int
		wantText string
	}{
		{name: "missing", status: 200, wantText: "does not answer as tokd (no Tokd-Api-Version header)"},
		{name: "missing on an error", status: 404, wantText: "does not answer as tokd (no Tokd-Api-Version header)"},
		{name: "other version", version: "2", status: 200, wantText: "tokd speaks API version 2, this tokctl speaks 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.version != "" {
					w.Header().Set(apitype.VersionHeader, tc.version)
				}
				w.WriteHeader(tc.status)
				json.NewEncoder(w).Encode(testToken)
			}))
			_, err := c.Token("ci.bot")
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("got %v, want an error saying %q", err, tc.wantText)
			}
			var apiErr *client.APIError
			if errors.As(err, &apiErr) {
				t.Errorf("got an *APIError (%v) from a server that is not tokd", err)
			}
		})
	}
}

func TestChunked(t *testing.T) {
	body, err := json.Marshal(testToken)
	if err != nil {
		t.Fatal(err)
	}
	half := len(body) / 2
	c, rec := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(apitype.VersionHeader, apitype.Version)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		w.Write(body[half:])
	}))
	got, err := c.Token("ci.bot")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testToken, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	if w := rec.Written(); !strings.Contains(w, "\r\nTransfer-Encoding: chunked\r\n") {
		t.Errorf("the server did not answer in chunks:\n%q", w)
	}
}

func TestRawFraming(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\ntokd-api-version: 1\r\nContent-Type: application/json\r\n"
	tok := `{"profile":"ci.bot","access_token":"eyJ.access.token","token_type":"Bearer","expires_at":"2030-06-01T13:00:00Z"}`
	cases := []struct {
		name   string
		answer string
	}{
		{name: "content length", answer: head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(tok)) + tok},
		{name: "until EOF", answer: head + "\r\n" + tok},
		{name: "chunks with extensions and a trailer", answer: head + "Transfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x;ext=1\r\n%s\r\n%X\r\n%s\r\n0\r\nTrailer: x\r\n\r\n", 10, tok[:10], len(tok)-10, tok[10:])},
		{name: "header names in any case", answer: "HTTP/1.0 200 OK\r\nTOKD-API-VERSION:1\r\n\r\n" + tok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := serveRaw(t, func(conn net.Conn, _ <-chan struct{}) { io.WriteString(conn, tc.answer) })
			got, err := c.Token("ci.bot")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(testToken, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMalformedAnswers(t *testing.T) {
	cases := []struct {
		name     string
		answer   string
		wantText string
	}{
		{name: "nothing", answer: "", wantText: "truncated answer"},
		{name: "head cut short", answer: "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\n", wantText: "truncated answer"},
		{name: "body shorter than Content-Length", answer: "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\nContent-Length: 10\r\n\r\n{}", wantText: "truncated answer"},
		{name: "chunks cut short", answer: "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}", wantText: "truncated chunked answer"},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.6\r\n\r\n", wantText: "not an HTTP answer"},
		{name: "not JSON", answer: "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\n\r\n<html>", wantText: "reading tokd's answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := serveRaw(t, func(conn net.Conn, _ <-chan struct{}) { io.WriteString(conn, tc.answer) })
			_, err := c.Token("ci.bot")
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("got %v, want an error saying %q", err, tc.wantText)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	stale := socketPath(t)
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	// A socket file left behind by a daemon that is gone.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	cases := []struct {
		name   string
		socket string
	}{
		{name: "no such file", socket: filepath.Join(filepath.Dir(socketPath(t)), "missing.sock")},
		{name: "no such directory", socket: "/nonexistent-tokd-test/tokd.sock"},
		{name: "nobody listening", socket: stale},
		{name: "empty path", socket: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &client.Client{Socket: tc.socket, Timeout: time.Second}
			_, err := c.Status()
			if !errors.Is(err, client.ErrUnreachable) {
				t.Fatalf("got %v, want an error matching ErrUnreachable", err)
			}
			if tc.socket != "" && !strings.Contains(err.Error(), tc.socket) {
				t.Errorf("error %q does not name the socket", err)
			}
		})
	}
}

// callWithin runs call and fails the test when it has not returned
// within limit: a guard against hanging, not a synchronisation.
func callWithin(t *testing.T, limit time.Duration, call func() error) (time.Duration, error) {
	t.Helper()
	type result struct {
		elapsed time.Duration
		err     error
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		err := call()
		done <- result{time.Since(start), err}
	}()
	select {
	case r := <-done:
		return r.elapsed, r.err
	case <-time.After(limit):
		t.Fatalf("the call did not return within %v", limit)
		return 0, nil
	}
}

func TestTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	cases := []struct {
		name  string
		serve func(c net.Conn, stop <-chan struct{})
	}{
		{name: "no answer", serve: func(_ net.Conn, stop <-chan struct{}) { <-stop }},
		{name: "head without end", serve: func(c net.Conn, stop <-chan struct{}) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\n")
			<-stop
		}},
		{name: "answer trickling in", serve: func(c net.Conn, stop <-chan struct{}) {
			// One byte every quarter of the timeout: no single read waits
			// for the whole timeout, the round trip does.
			tick := time.NewTicker(timeout / 4)
			defer tick.Stop()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\n")
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := io.WriteString(c, "X"); err != nil {
						return
					}
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := serveRaw(t, tc.serve)
			c.Timeout = timeout
			elapsed, err := callWithin(t, 20*timeout, func() error {
				_, err := c.Token("ci.bot")
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "timed out") {
				t.Fatalf("got %v, want a timeout", err)
			}
			if elapsed < timeout {
				t.Errorf("the call failed after %v, before the timeout of %v", elapsed, timeout)
			}
		})
	}
}

func TestOversizedAnswer(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\nContent-Type: application/json\r\n\r\n"
	// answer returns a valid token answer of exactly n bytes, padded with
	// JSON whitespace.
	answer := func(n int) []byte {
		b := []byte(head + `{"profile":"ci.bot","access_token":"eyJ.access.token","token_type":"Bearer","expires_at":"2030-06-01T13:00:00Z"}`)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	cases := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{name: "at the limit", size: maxResponse},
		{name: "one byte over", size: maxResponse + 1, wantErr: true},
		{name: "some KiB over", size: maxResponse + 64<<10, wantErr: true},
		{name: "a MiB over", size: maxResponse + 1<<20, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := answer(tc.size)
			c := serveRaw(t, func(conn net.Conn, _ <-chan struct{}) { conn.Write(data) })
			got, err := c.Token("ci.bot")
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(testToken, got); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "larger than") {
				t.Fatalf("a %d-byte answer: got %v, want it refused as too large", tc.size, err)
			}
		})
	}

	t.Run("from net/http", func(t *testing.T) {
		c, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(apitype.VersionHeader, apitype.Version)
			w.Write(bytes.Repeat([]byte(" "), maxResponse+1))
		}))
		if _, err := c.Token("ci.bot"); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("got %v, want the answer refused as too large", err)
		}
	})
}
