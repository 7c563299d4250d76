package daemon_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/daemon"
)

// TestAPI drives one daemon through the real client: get, status,
// refresh, forget, import, and the errors of each.
func TestAPI(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"), importProfile("imp"))
	start := time.Now()
	d := e.start()

	var first *apitype.Token
	t.Run("get returns a token the emulator issued", func(t *testing.T) {
		first = d.get(t, "ci")
		e.verifyIssued(t, first.AccessToken)
		if first.Profile != "ci" || first.TokenType != "Bearer" {
			t.Errorf("get ci = profile %q, type %q; want ci, Bearer", first.Profile, first.TokenType)
		}
		// The emulator's tokens live an hour.
		if lo, hi := start.Add(59*time.Minute), time.Now().Add(61*time.Minute); first.ExpiresAt.Before(lo) || first.ExpiresAt.After(hi) {
			t.Errorf("expires_at = %v, want between %v and %v", first.ExpiresAt, lo, hi)
		}
		// The token fetched at start is served; a second get makes no request.
		before := e.requests()
		if again := d.get(t, "ci"); again.AccessToken != first.AccessToken {
			t.Errorf("a second get returned another token")
		}
		if got := e.requests(); got != before {
			t.Errorf("a second get made %d token requests, want 0", got-before)
		}
	})
	if first == nil {
		t.FailNow()
	}

	t.Run("status lists the profile as valid with its expiry", func(t *testing.T) {
		st := d.status(t)
		if st.Version != apitype.Version {
			t.Errorf("status version = %q, want %q", st.Version, apitype.Version)
		}
		if got, want := profileNames(st), []string{"ci", "imp"}; !cmp.Equal(got, want) {
			t.Errorf("status profiles = %q, want %q", got, want)
		}
		ci := profileStatus(st, "ci")
		if ci == nil {
			t.Fatal("status has no profile ci")
		}
		if ci.State != "valid" {
			t.Errorf("ci state = %q, want valid", ci.State)
		}
		if ci.ExpiresAt == nil || !ci.ExpiresAt.Equal(first.ExpiresAt) {
			t.Errorf("ci expires_at = %v, want %v (the token's)", ci.ExpiresAt, first.ExpiresAt)
		}
		if ci.LastRefresh == nil || ci.LastRefresh.Before(start.Add(-time.Second)) {
			t.Errorf("ci last_refresh = %v, want a time after the daemon started", ci.LastRefresh)
		}
		if ci.NextRefresh == nil || !ci.NextRefresh.After(time.Now()) || !ci.NextRefresh.Before(first.ExpiresAt) {
			t.Errorf("ci next_refresh = %v, want between now and the expiry %v", ci.NextRefresh, first.ExpiresAt)
		}
		if ci.LastError != "" {
			t.Errorf("ci last_error = %q, want none", ci.LastError)
		}
		if imp := profileStatus(st, "imp"); imp == nil || imp.State != "empty" {
			t.Errorf("imp status = %+v, want state empty", imp)
		}
		raw, _ := json.Marshal(st)
		if strings.Contains(string(raw), first.AccessToken) {
			t.Errorf("status contains the token")
		}
	})

	var refreshed *apitype.Token
	t.Run("refresh gives a new token", func(t *testing.T) {
		before := e.requests()
		refreshed = d.refresh(t, "ci")
		e.verifyIssued(t, refreshed.AccessToken)
		if refreshed.AccessToken == first.AccessToken {
			t.Fatalf("refresh returned the old token")
		}
		if got := e.requests() - before; got != 1 {
			t.Errorf("refresh made %d token requests, want 1", got)
		}
		if got := d.get(t, "ci"); got.AccessToken != refreshed.AccessToken {
			t.Errorf("get after refresh did not return the refreshed token")
		}
	})

	t.Run("forget then get fetches anew", func(t *testing.T) {
		before := e.requests()
		if err := d.client.Forget("ci"); err != nil {
			t.Fatalf("forget ci: %v", err)
		}
		tok := d.get(t, "ci")
		e.verifyIssued(t, tok.AccessToken)
		if tok.AccessToken == refreshed.AccessToken || tok.AccessToken == first.AccessToken {
			t.Errorf("get after forget returned a forgotten token")
		}
		if got := e.requests() - before; got != 1 {
			t.Errorf("forget and get made %d token requests, want 1", got)
		}
	})

	t.Run("get before import fails and says why", func(t *testing.T) {
		_, err := d.client.Token("imp")
		if got := apiStatus(err); got != http.StatusServiceUnavailable {
			t.Fatalf("get imp before import: status %d (%v), want 503", got, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "profile imp: ") || strings.Count(msg, "profile imp") != 1 || !strings.Contains(msg, "nothing imported") {
			t.Errorf("get imp before import: message %q, want it to name the profile once and say nothing was imported", msg)
		}
	})

	t.Run("import into an import profile, then get returns it", func(t *testing.T) {
		before := e.requests()
		body, access := tokFile(t, time.Hour)
		e.saw(access)
		imported, err := d.client.Import("imp", body)
		if err != nil {
			t.Fatalf("import: %v", err)
		}
		if imported.AccessToken != access {
			t.Errorf("import answered another token")
		}
		if got := d.get(t, "imp"); got.AccessToken != access {
			t.Errorf("get imp after import returned another token")
		} else if want := time.Unix(time.Now().Add(time.Hour).Unix(), 0); got.ExpiresAt.Sub(want).Abs() > 5*time.Second {
			t.Errorf("imported token expires_at = %v, want its exp claim, about %v", got.ExpiresAt, want)
		}
		if imp := profileStatus(d.status(t), "imp"); imp == nil || imp.State != "valid" {
			t.Errorf("imp status after import = %+v, want valid", imp)
		}
		if got := e.requests(); got != before {
			t.Errorf("import made %d token requests, want 0", got-before)
		}
	})

	t.Run("import refused", func(t *testing.T) {
		expired, _ := tokFile(t, -time.Minute)
		for _, tc := range []struct {
			name, body, msg string
		}{
			{"garbage", "\x00garbage, not JSON", "not a JSON object"},
			{"JSON array", `["app_access_token"]`, "not a JSON object"},
			{"no access token", `{"access_token": "x"}`, `no "app_access_token"`},
			{"not a JWT", `{"app_access_token": "opaque"}`, "not a JWT"},
			{"expired", string(expired), "expired"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := d.client.Import("imp", []byte(tc.body))
				if got := apiStatus(err); got != http.StatusBadRequest {
					t.Fatalf("import %s: status %d (%v), want 400", tc.name, got, err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("import %s: message %q, want it to say %q", tc.name, err, tc.msg)
				}
			})
		}
		// The refused imports left the imported token in place.
		if imp := profileStatus(d.status(t), "imp"); imp == nil || imp.State != "valid" {
			t.Errorf("imp status after refused imports = %+v, want valid", imp)
		}
	})

	t.Run("unknown profile is 404 for root", func(t *testing.T) {
		body, _ := tokFile(t, time.Hour)
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"get", func() error { _, err := d.client.Token("nosuch"); return err }},
			{"refresh", func() error { _, err := d.client.Refresh("nosuch"); return err }},
			{"forget", func() error { return d.client.Forget("nosuch") }},
			{"import", func() error { _, err := d.client.Import("nosuch", body); return err }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call()
				if !errors.Is(err, client.ErrNotFound) {
					t.Fatalf("%s nosuch: %v (status %d), want 404", tc.name, err, apiStatus(err))
				}
				if !strings.Contains(err.Error(), `"nosuch"`) {
					t.Errorf("%s nosuch: message %q does not name the profile", tc.name, err)
				}
			})
		}
	})

	t.Run("socket mode", func(t *testing.T) {
		fi, err := os.Lstat(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != daemon.SocketMode {
			t.Errorf("socket mode = %v, want a socket with %04o", fi.Mode(), daemon.SocketMode)
		}
	})
}

// TestConcurrentGetsOnEmptyCache shows that 200 concurrent gets for a
// profile with no token cause exactly one token request, and all 200 get
// its token.
func TestConcurrentGetsOnEmptyCache(t *testing.T) {
	const n = 200
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"))
	// The fetch at start hangs, so the cache stays empty until release.
	hang, release := hangFault()
	t.Cleanup(release)
	e.em.SetOutage(hang.fault)
	d := e.start()
	hang.waitTaken(t)

	type result struct {
		tok *apitype.Token
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			tok, err := d.client.Token("ci")
			results <- result{tok, err}
		}()
	}
	// Every get is waiting in the cache for the one fetch in flight.
	waitInGet(t, n)
	if got := e.requests(); got != 1 {
		t.Fatalf("%d token requests while %d gets wait, want 1", got, n)
	}
	release()
	e.em.ClearFaults()

	tokens := map[string]int{}
	for range n {
		r := <-results
		if r.err != nil {
			t.Errorf("get: %v", r.err)
			continue
		}
		tokens[r.tok.AccessToken]++
	}
	if got := e.requests(); got != 1 {
		t.Errorf("%d concurrent gets made %d token requests, want 1", n, got)
	}
	if len(tokens) != 1 {
		t.Fatalf("%d gets returned %d distinct tokens, want 1", n, len(tokens))
	}
	for tok := range tokens {
		e.saw(tok)
		e.verifyIssued(t, tok)
	}
}

// TestRawHTTP sends requests that tokctl's client would not send.
func TestRawHTTP(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"), importProfile("imp"))
	d := e.start()
	hc := rawClient(d.socket)

	tokBody, tokAccess := tokFile(t, time.Hour)
	e.saw(tokAccess)
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		header  map[string]string
		body    []byte
		status  int
		errText string // in the {"error": ...} body; "" for a 2xx
	}{
		{name: "status without a version header", method: "GET", path: "/v1/status", status: 200},
		{name: "get with the version header", method: "GET", path: "/v1/token/ci",
			header: map[string]string{apitype.VersionHeader: apitype.Version}, status: 200},
		{name: "origin", method: "GET", path: "/v1/token/ci",
			header: map[string]string{"Origin": "https://evil.example"}, status: 403, errText: "Origin or Referer"},
		{name: "referer", method: "GET", path: "/v1/token/ci",
			header: map[string]string{"Referer": "https://evil.example/page"}, status: 403, errText: "Origin or Referer"},
		{name: "origin on status", method: "GET", path: "/v1/status",
			header: map[string]string{"Origin": "null"}, status: 403, errText: "Origin or Referer"},
		{name: "wrong API version", method: "GET", path: "/v1/token/ci",
			header: map[string]string{apitype.VersionHeader: "2"}, status: 400, errText: "API version"},
		{name: "unknown path", method: "GET", path: "/v1/nosuch", status: 404, errText: "no such API path"},
		{name: "unversioned path", method: "GET", path: "/token/ci", status: 404, errText: "no such API path"},
		{name: "other API version's path", method: "GET", path: "/v2/token/ci", status: 404, errText: "no such API path"},
		{name: "wrong method", method: "PUT", path: "/v1/token/ci", status: 404, errText: "no such API path"},
		{name: "import body over 1 MiB", method: "POST", path: "/v1/token/imp/import",
			body: append([]byte(`{"app_access_token":"`), make([]byte, apitype.MaxRequestBody)...), status: 413, errText: "larger than"},
		{name: "import body at 1 MiB is read", method: "POST", path: "/v1/token/imp/import",
			body: make([]byte, apitype.MaxRequestBody), status: 400, errText: "not a JSON object"},
		{name: "import", method: "POST", path: "/v1/token/imp/import", body: tokBody, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = strings.NewReader(string(tc.body))
			}
			req, err := http.NewRequest(tc.method, "http://tokd"+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.status, raw)
			}
			if got := resp.Header.Get(apitype.VersionHeader); got != apitype.Version {
				t.Errorf("%s header = %q, want %q", apitype.VersionHeader, got, apitype.Version)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if tc.errText == "" {
				return
			}
			var er apitype.ErrorResponse
			if err := json.Unmarshal(raw, &er); err != nil || !strings.Contains(er.Error, tc.errText) {
				t.Errorf("body %s, want {\"error\": ...%s...}", raw, tc.errText)
			}
			if strings.Contains(string(raw), "access_token") {
				t.Errorf("an error answer carries a token: %s", raw)
			}
		})
	}

	// Headers are bounded too. The server refuses them before any
	// handler runs, and says so as the API does.
	t.Run("headers over 16 KiB", func(t *testing.T) {
		req, err := http.NewRequest("GET", "http://tokd/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("x", 64<<10))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
		if got := resp.Header.Get(apitype.VersionHeader); got != apitype.Version {
			t.Errorf("%s header = %q, want %q", apitype.VersionHeader, got, apitype.Version)
		}
		var er apitype.ErrorResponse
		if err := json.Unmarshal(raw, &er); err != nil || !strings.Contains(er.Error, "16 KiB") {
			t.Errorf("body %s, want {\"error\": ...16 KiB...}", raw)
		}
	})
}
