package daemon

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDeniedRequestsLoggedOncePerMinutePerUID: a uid refused again and
// again is logged at its first refusal, then at most once a minute with
// the number of refusals not logged since; another uid is logged on its
// own; every refusal is still counted in tokd_token_requests_total.
func TestDeniedRequestsLoggedOncePerMinutePerUID(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	m := newMetrics(log)
	cfg := testConfig()
	m.setProfiles(cfg.ProfileNames())
	s := newHTTPServer(newServer(newTestTokens(), cfg, 4242, clock, log, m), log)
	intruder := &PeerCred{PID: 3, UID: 2000, GID: 2000}
	other := &PeerCred{PID: 4, UID: 2001, GID: 2001}

	deny := func(cred *PeerCred, n int) {
		t.Helper()
		c, _ := connect(t, s, cred)
		br := bufio.NewReader(c)
		for range n {
			io.WriteString(c, "GET /v1/token/closed HTTP/1.1\r\nHost: tokd\r\n\r\n")
			if resp, body := readAnswer(t, br, false); resp.StatusCode != 403 {
				t.Fatalf("uid %d: %d %s, want 403", cred.UID, resp.StatusCode, body)
			}
		}
		c.Close()
	}
	lines := func(uid string) []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="request denied"`) && strings.Contains(l, "uid="+uid+" ") {
				out = append(out, l)
			}
		}
		return out
	}

	deny(intruder, 50)
	if got := lines("2000"); len(got) != 1 || !strings.Contains(got[0], "not_logged_since=0") {
		t.Fatalf("after 50 refusals in a minute: %q, want one line", got)
	}
	deny(other, 1)
	if got := lines("2001"); len(got) != 1 {
		t.Errorf("another uid's first refusal: %q, want it logged", got)
	}
	advance(59 * time.Second)
	deny(intruder, 1)
	if got := lines("2000"); len(got) != 1 {
		t.Errorf("59 s later: %d lines, want still 1", len(got))
	}
	advance(time.Second)
	deny(intruder, 1)
	if got := lines("2000"); len(got) != 2 || !strings.Contains(got[1], "not_logged_since=50") {
		t.Errorf("a minute after the first: %q, want a second line saying 50 were not logged", got)
	}
	if got := testutil.ToFloat64(m.tokenRequests.WithLabelValues("closed", resultDenied)); got != 53 {
		t.Errorf("tokd_token_requests_total{closed,denied} = %v, want 53: every refusal counted", got)
	}
}
