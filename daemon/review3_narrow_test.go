package daemon

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/token"
)

// TestReloadServesNoOldTokenUnderNewAccess shows that, while a reload is
// on its way, a profile whose settings change (and with them its token)
// serves its old token only to a caller that both the old and the new
// configuration admit: one the new configuration adds must not get the
// token the old settings fetched, nor one it drops. The reload is held
// between its first step (narrowing access) and the cache's switch by a
// store write in flight, which the cache's switch waits for.
func TestReloadServesNoOldTokenUnderNewAccess(t *testing.T) {
	const (
		kept    = 1000 // allowed before and after
		dropped = 1001 // allowed before only
		added   = 1002 // allowed after only
	)
	dir := t.TempDir()
	load := func(name, body string) *config.Config {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Load(path, config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const aux = "[profiles.aux]\ngrant_type = \"import\"\n"
	old := load("old.toml", aux+"[profiles.ci]\ngrant_type = \"import\"\nallowed_uids = [1000, 1001]\n")
	// New scopes: a new fingerprint, so the reload drops the old token.
	next := load("next.toml", aux+"[profiles.ci]\ngrant_type = \"import\"\nscopes = [\"https://api.example.com/read\"]\nallowed_uids = [1000, 1002]\n")
	if old.Profiles["ci"].Fingerprint() == next.Profiles["ci"].Fingerprint() {
		t.Fatal("the test needs the reload to change ci's fingerprint")
	}

	log := slog.New(slog.DiscardHandler)
	m := newMetrics(log)
	m.setProfiles(old.ProfileNames())
	st := &gatedStore{puts: make(chan struct{}, 1)}
	tokens := cache.New(cache.Options{Logger: log, Store: st})
	trs := &transports{}
	tokens.SetProfiles(cacheProfiles(old, nil, trs, m, log))
	const oldToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvbGQifQ.b2xkLXNldHRpbmdz"
	if err := tokens.Import("ci", &token.Token{AccessToken: oldToken, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	<-st.puts
	srv := newServer(tokens, old, 4242, time.Now, log, m)
	hs := newHTTPServer(srv, log)

	// getAs asks for ci's token as uid on a new connection; it reports the
	// status and whether the answer holds the old token.
	getAs := func(uid uint32) (int, bool) {
		t.Helper()
		c, done := connect(t, hs, &PeerCred{UID: uid, GID: uid})
		defer func() { c.Close(); <-done }()
		io.WriteString(c, "GET /v1/token/ci HTTP/1.1\r\nHost: tokd\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("GET /v1/token/ci as uid %d: %v", uid, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.Contains(string(body), oldToken)
	}
	if status, got := getAs(kept); status != http.StatusOK || !got {
		t.Fatalf("before the reload, uid %d: status %d, old token %v; want 200 and the token", kept, status, got)
	}
	if status, _ := getAs(added); status != http.StatusForbidden {
		t.Fatalf("before the reload, uid %d: status %d, want 403", added, status)
	}

	// A write of aux's token that waits for the gate holds the cache's
	// switch back.
	st.close()
	imported := make(chan error, 1)
	go func() {
		imported <- tokens.Import("aux", &token.Token{AccessToken: "aux-token", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	}()
	<-st.puts
	before := srv.policy.Load()
	reloaded := make(chan error, 1)
	go func() {
		reloaded <- reload(Options{Config: old, Reload: func() (*config.Config, error) { return next, nil }}, trs, tokens, srv, m, log)
	}()
	// Wait for the reload's first step; it then waits for the lock.
	deadline := time.Now().Add(20 * time.Second)
	for srv.policy.Load() == before {
		if time.Now().After(deadline) {
			st.open()
			t.Fatal("the reload did not narrow access")
		}
		runtime.Gosched()
	}
	type answer struct {
		status int
		old    bool
	}
	during := map[uint32]answer{}
	for _, uid := range []uint32{added, dropped} {
		status, got := getAs(uid)
		during[uid] = answer{status, got}
	}
	st.open()
	if err := <-imported; err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	for uid, a := range during {
		if a.old || a.status == http.StatusOK {
			t.Errorf("during the reload, uid %d (allowed by one configuration only): status %d, old token %v; want a refusal",
				uid, a.status, a.old)
		}
	}
	// After it, the old token is gone for everybody, and the added uid may
	// use the profile.
	for _, uid := range []uint32{kept, added} {
		if status, got := getAs(uid); got || status == http.StatusForbidden {
			t.Errorf("after the reload, uid %d: status %d, old token %v; want no token to serve (503)", uid, status, got)
		}
	}
	if status, _ := getAs(dropped); status != http.StatusForbidden {
		t.Errorf("after the reload, uid %d: status %d, want 403", dropped, status)
	}
}

// gatedStore is a cache.Store whose Puts, once close is called, wait
// until open is called; each Put reports on puts as it starts.
type gatedStore struct {
	puts chan struct{}
	mu   sync.Mutex
	gate chan struct{} // nil while open
}

func (s *gatedStore) close() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) open() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *gatedStore) Put(cache.Record) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	s.puts <- struct{}{}
	if gate != nil {
		<-gate
	}
	return nil
}

func (s *gatedStore) Delete(string) error { return nil }
