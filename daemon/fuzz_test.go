package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
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
func (f fuzzTokens) Refresh(ctx context.Context, p string) (*token.Token, error) {
	return f.Get(ctx, p)
}
func (fuzzTokens) Forget(string) error               { return nil }
func (fuzzTokens) Import(string, *token.Token) error { return nil }
func (fuzzTokens) Status() []cache.ProfileStatus {
	return []cache.ProfileStatus{{Name: "open", State: cache.StateValid}, {Name: "closed", State: cache.StateValid}}
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

	cfg := &config.Config{Profiles: map[string]*config.Profile{
		"open": {Name: "open", AllowedUIDs: []uint32{1000},
			Git:    &config.Git{URLs: []string{"https://git.example.com/team/"}, Username: "oauth2"},
			Docker: &config.Docker{Registries: []string{"registry.example.com"}, Username: "u"}},
		"closed": {Name: "closed",
			Git:    &config.Git{URLs: []string{"https://git.example.com/"}, Username: "oauth2"},
			Docker: &config.Docker{Registries: []string{"closed.example.com"}, Username: "u"}},
	}}
	log := slog.New(slog.DiscardHandler)
	srv := newServer(fuzzTokens{}, cfg, 4242, time.Now, log, newMetrics(log))
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
