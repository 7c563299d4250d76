package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/token"
)

// fuzzTokens is a cache that always has a token, so that the fuzzer
// reaches every handler's answer.
type fuzzTokens struct{}

const fuzzSecret = "fuzz-secret-token"

func (fuzzTokens) Get(context.Context, string) (*token.Token, error) {
	return &token.Token{AccessToken: fuzzSecret, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
}
func (f fuzzTokens) Held(p string) (*token.Token, bool) {
	tok, _ := f.Get(context.Background(), p)
	return tok, true
}
func (f fuzzTokens) Refresh(ctx context.Context, p string) (*token.Token, error) {
	return f.Get(ctx, p)
}
func (fuzzTokens) Forget(string) error                        { return nil }
func (fuzzTokens) ForgetRefused(string, string) (bool, error) { return false, nil }
func (fuzzTokens) Import(string, *token.Token) error          { return nil }
func (fuzzTokens) Status() []cache.ProfileStatus {
	return []cache.ProfileStatus{{Name: "open", State: cache.StateValid}, {Name: "closed", State: cache.StateValid}}
}

// fuzzServer is the socket API the fuzz targets drive: "open" allows uid
// 1000, "closed" only root and the daemon's uid, 4242.
func fuzzServer() *server {
	cfg := &config.Config{Profiles: map[string]*config.Profile{
		"open": {Name: "open", AllowedUIDs: []uint32{1000},
			Git:    &config.Git{URLs: []string{"https://git.example.com/team/"}, Username: "oauth2"},
			Docker: &config.Docker{Registries: []string{"registry.example.com"}, Username: "u"}},
		"closed": {Name: "closed",
			Git:    &config.Git{URLs: []string{"https://git.example.com/"}, Username: "oauth2"},
			Docker: &config.Docker{Registries: []string{"closed.example.com"}, Username: "u"}},
	}}
	log := slog.New(slog.DiscardHandler)
	m := newMetrics(log)
	m.setProfiles(cfg.ProfileNames())
	return newServer(fuzzTokens{}, cfg, 4242, time.Now, log, m)
}

// FuzzHandler feeds the socket API arbitrary methods, paths, headers,
// bodies and callers: it must never panic, always answer with the
// version header and a JSON body (or 204), and never hand the token of
// a profile to a caller the profile does not allow.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/token/open", "", "", uint32(1000), []byte(nil))
	f.Add("GET", "/v1/token/closed", "", "", uint32(1000), []byte(nil))
	f.Add("POST", "/v1/token/open/import", "1", "", uint32(0), []byte(`{"app_access_token":"x"}`))
	f.Add("GET", "/v1/git?url=https%3A%2F%2Fgit.example.com%2Fteam%2Fx", "", "", uint32(1000), []byte(nil))
	f.Add("GET", "/v1/docker?server=registry.example.com", "", "http://evil", uint32(1000), []byte(nil))
	f.Add("GET", "/v1/docker/list", "2", "", uint32(4242), []byte(nil))
	f.Add("DELETE", "/v1/git?url=%zz", "", "", uint32(1000), []byte(nil))
	f.Add("GET", "/v1/status", "", "", uint32(1000), []byte(nil))
	f.Add("GET", "/v1/metrics", "", "", uint32(1000), []byte(nil))

	srv := fuzzServer()
	h := srv.handler()

	f.Fuzz(func(t *testing.T, method, target, version, origin string, uid uint32, body []byte) {
		if len(body) > apitype.MaxRequestBody+10 || !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.NewRequest(method, "http://tokd"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		if version != "" {
			req.Header.Set(apitype.VersionHeader, version)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req = req.WithContext(context.WithValue(req.Context(), peerCredKey{}, &PeerCred{UID: uid, GID: uid}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Header().Get(apitype.VersionHeader) != apitype.Version {
			t.Fatalf("%s %s: no version header (status %d)", method, target, rec.Code)
		}
		out := rec.Body.String()
		privileged := uid == 0 || uid == 4242
		if !privileged && uid != 1000 && strings.Contains(out, fuzzSecret) {
			t.Fatalf("%s %s as uid %d: a token reached a caller no profile allows", method, target, uid)
		}
		if !privileged && strings.Contains(out, fuzzSecret) && (strings.Contains(out, `"closed"`) || strings.Contains(out, "closed.example.com")) {
			t.Fatalf("%s %s as uid %d: closed's token or registry reached uid %d:\n%s", method, target, uid, uid, out)
		}
		if rec.Code == http.StatusNoContent || strings.HasSuffix(target, "/metrics") && rec.Code == 200 {
			return
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: status %d with a body that is not JSON: %q", method, target, rec.Code, out)
		}
	})
}

// FuzzConn feeds the socket server raw bytes, as any local process may
// send them, from a caller of the fuzzed uid: the server must never
// panic or hang, and every answer must be well-framed HTTP/1.1 with the
// version header, Cache-Control: no-store, and a JSON body (but for 1xx,
// 204, HEAD and the metrics), and must never hand a token to a caller
// its profile does not allow.
func FuzzConn(f *testing.F) {
	for _, seed := range []string{
		"GET /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n",
		"GET /v1/token/closed HTTP/1.1\r\nHost: tokd\r\n\r\nGET /v1/status HTTP/1.1\r\nHost: tokd\r\n\r\n",
		"GET /v1/token/open HTTP/1.0\r\nConnection: keep-alive\r\nTokd-Api-Version: 1\r\n\r\nGET /v1/token/open HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		"POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: 26\r\n\r\n{\"app_access_token\":\"x.y\"}",
		"POST /v1/token/open/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\n{}\n\r\n0\r\nT: 1\r\n\r\n",
		"POST /v1/token/open/refresh HTTP/1.1\r\nHost: tokd\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET /v1/git?url=https%3A%2F%2Fgit.example.com%2Fteam%2Fx HTTP/1.1\nHost: tokd\n\n",
		"GET /v1/docker?server=closed.example.com HTTP/1.1\r\nHost: tokd\r\nOrigin: x\r\n\r\n",
		"HEAD /v1/docker/list HTTP/1.1\r\nHost: tokd\r\n\r\nDELETE /v1/token/open HTTP/1.1\r\nHost: tokd\r\n\r\n",
		"GET /v1/metrics HTTP/1.1\r\nHost: tokd\r\nContent-Length: 2, 3\r\n\r\n",
		"GET http://tokd/v1/token/op%65n?x HTTP/1.1\r\nHost: tokd\r\nTokd-Api-Version: 2\r\n\r\n",
		"GET /v1/token/../token/closed HTTP/1.1\r\nHost: tokd\r\n\r\n",
	} {
		for _, uid := range []uint32{0, 1000, 1001} {
			f.Add([]byte(seed), uid)
		}
	}
	srv := fuzzServer()
	s := newHTTPServer(srv, srv.log)

	f.Fuzz(func(t *testing.T, in []byte, uid uint32) {
		if len(in) > 64<<10 {
			return
		}
		c, done := connect(t, s, &PeerCred{UID: uid, GID: uid})
		go func() {
			c.Write(in)
			// The server sees the end of the input and closes once it
			// has answered what it could.
			c.(*net.UnixConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the answers: %v", err)
		}
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Fatal("the server did not end the connection")
		}
		privileged := uid == 0 || uid == 4242
		if !privileged && uid != 1000 && bytes.Contains(out, []byte(fuzzSecret)) {
			t.Fatalf("a token reached uid %d, which no profile allows:\n%s", uid, out)
		}
		if bytes.Contains(in, []byte("HEAD")) {
			return // the answers' framing depends on which requests were HEAD
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for i := 0; ; i++ {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("answer %d does not parse: %v\n%q", i, err, out)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("answer %d: body: %v\n%q", i, err, out)
			}
			if resp.StatusCode < 200 {
				continue
			}
			if resp.Header.Get(apitype.VersionHeader) != apitype.Version || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("answer %d (%d) without the version header or Cache-Control:\n%q", i, resp.StatusCode, out)
			}
			if !privileged && bytes.Contains(body, []byte(fuzzSecret)) && bytes.Contains(body, []byte(`"closed"`)) {
				t.Fatalf("closed's token reached uid %d:\n%s", uid, body)
			}
			if resp.StatusCode == http.StatusNoContent || resp.StatusCode == 200 && !bytes.HasPrefix(body, []byte("{")) && resp.Header.Get("Content-Type") != "application/json" {
				continue // 204, or the metrics' text
			}
			if !json.Valid(body) {
				t.Fatalf("answer %d (%d): body not JSON: %q", i, resp.StatusCode, body)
			}
		}
	})
}
