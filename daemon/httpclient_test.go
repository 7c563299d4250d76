package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
)

// TestNetHTTPClient drives the daemon with net/http's client, which keeps
// its connection: every request after the first reuses it, imports with a
// Content-Length body and with a chunked one both land, and the answers
// are what tokctl's client gets.
func TestNetHTTPClient(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"), importProfile("imp"))
	d := e.start()

	var dials, reused atomic.Int32
	hc := &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				dials.Add(1)
				var dl net.Dialer
				return dl.DialContext(ctx, "unix", d.socket)
			},
			MaxIdleConnsPerHost: 1,
		},
	}
	do := func(t *testing.T, method, path string, body io.Reader) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://tokd"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(apitype.VersionHeader, apitype.Version)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused.Add(1)
				}
			},
		}))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if v := resp.Header.Get(apitype.VersionHeader); v != apitype.Version {
			t.Errorf("%s %s: %s = %q", method, path, apitype.VersionHeader, v)
		}
		return resp.StatusCode, raw
	}
	token := func(t *testing.T, raw []byte) apitype.Token {
		t.Helper()
		var tok apitype.Token
		if err := json.Unmarshal(raw, &tok); err != nil {
			t.Fatalf("answer %s: %v", raw, err)
		}
		e.saw(tok.AccessToken)
		return tok
	}

	want := d.get(t, "ci")
	t.Run("gets reuse one connection", func(t *testing.T) {
		for i := range 5 {
			status, raw := do(t, "GET", "/v1/token/ci", nil)
			if status != 200 || token(t, raw).AccessToken != want.AccessToken {
				t.Fatalf("get %d: %d %s", i, status, raw)
			}
		}
		if dials.Load() != 1 || reused.Load() != 4 {
			t.Errorf("5 gets: %d connections, %d reused; want 1 and 4", dials.Load(), reused.Load())
		}
	})
	t.Run("import with a Content-Length body", func(t *testing.T) {
		body, access := tokFile(t, time.Hour)
		e.saw(access)
		status, raw := do(t, "POST", "/v1/token/imp/import", bytes.NewReader(body))
		if status != 200 || token(t, raw).AccessToken != access {
			t.Fatalf("import: %d %s", status, raw)
		}
		if status, raw := do(t, "GET", "/v1/token/imp", nil); status != 200 || token(t, raw).AccessToken != access {
			t.Errorf("get after import: %d %s", status, raw)
		}
	})
	t.Run("import with a chunked body", func(t *testing.T) {
		body, access := tokFile(t, 2*time.Hour)
		e.saw(access)
		// A reader of unknown length makes net/http send chunks.
		chunked := io.MultiReader(bytes.NewReader(body[:10]), bytes.NewReader(body[10:]))
		status, raw := do(t, "POST", "/v1/token/imp/import", chunked)
		if status != 200 || token(t, raw).AccessToken != access {
			t.Fatalf("import: %d %s", status, raw)
		}
	})
	t.Run("errors keep the connection", func(t *testing.T) {
		status, raw := do(t, "POST", "/v1/token/imp/import", strings.NewReader("not a token file"))
		if status != http.StatusBadRequest || !strings.Contains(string(raw), "not a JSON object") {
			t.Errorf("import of garbage: %d %s", status, raw)
		}
		if status, raw := do(t, "GET", "/v1/status", nil); status != 200 || !strings.Contains(string(raw), `"profile":"imp"`) {
			t.Errorf("status: %d %s", status, raw)
		}
	})
	if got := dials.Load(); got != 1 {
		t.Errorf("the client dialled %d times, want once", got)
	}
}
