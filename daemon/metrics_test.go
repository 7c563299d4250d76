package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/emulator"
)

// TestMetrics drives a daemon through token requests of every kind and
// result, refreshes that succeed and fail in every way the identity
// domain can fail, and a reload, then checks the metrics it serves on the
// socket and on metrics_address, value by value.
//
// The daemon runs on a fake clock that the test never advances: the only
// fetches are the start's and those the test asks for, so every count is
// exact. The cache reports a fetch to the metrics after the requests
// waiting for it have their answer, but before it logs the fetch's "token
// refresh" line: the test waits for that line before it counts.
func TestMetrics(t *testing.T) {
	e := newEnvWithClock(t, clocktest.New(time.Now()))
	metricsAddr := freeLoopbackAddr(t)
	downAddr := freeLoopbackAddr(t) // a token endpoint where nothing listens
	e.writeConfig(metricsConfig(e, metricsAddr, downAddr, e.jwtProfile("other"))...)
	d := e.start()
	// The start fetches ci, other and down; down fails (nothing listens).
	e.waitRefreshes(t, 0, 3)

	// Token requests answered 200, 404 and 503, on every route that
	// serves a token.
	d.get(t, "ci")
	from := e.logs.Len()
	ci := d.refresh(t, "ci")
	e.waitRefreshes(t, from, 1)
	if _, err := d.client.Token("nosuch"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("get nosuch: %v, want 404", err)
	}
	if _, err := d.client.Token("imp"); apiStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("get imp before any import: %v, want 503", err)
	}
	body, access := tokFile(t, time.Hour)
	e.saw(access)
	imp, err := d.client.Import("imp", body)
	if err != nil {
		t.Fatalf("import imp: %v", err)
	}
	if _, err := d.client.Import("imp", []byte("not a token file")); apiStatus(err) != http.StatusBadRequest {
		t.Fatalf("import of garbage: %v, want 400", err)
	}
	gitCred, err := d.client.Git("https://git.example.com/team/repo.git")
	if err != nil {
		t.Fatalf("git credential: %v", err)
	}
	e.saw(gitCred.AccessToken)
	if _, err := d.client.Git("https://elsewhere.example.com/repo.git"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("git credential for an unknown host: %v, want 404", err)
	}
	dockerCred, err := d.client.Docker("registry.example.com")
	if err != nil {
		t.Fatalf("docker credential: %v", err)
	}
	e.saw(dockerCred.AccessToken)
	if _, err := d.client.Docker("elsewhere.example.com"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("docker credential for an unknown registry: %v, want 404", err)
	}
	// Forgetting serves no token: not counted.
	if err := d.client.Forget("nosuch"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("forget nosuch: %v, want 404", err)
	}

	// Refreshes of ci failing every way the token endpoint fails. A
	// known RFC 6749 code is reported as such, even on a 503 (the
	// emulator's outage answers temporarily_unavailable, as the identity
	// domain does); an answer without one, or with a code of no standard,
	// by its HTTP status.
	for _, f := range []struct {
		fault  emulator.Fault
		outage bool
	}{
		{fault: emulator.ServerErrorFault(http.StatusServiceUnavailable), outage: true}, // temporarily_unavailable
		{fault: emulator.HTMLFault(http.StatusServiceUnavailable)},                      // http_503
		{fault: emulator.ServerErrorFault(http.StatusInternalServerError)},              // server_error
		{fault: emulator.ErrorFault(http.StatusBadRequest, "invalid_grant", "assertion refused")},
		{fault: emulator.ErrorFault(http.StatusBadRequest, "made_up_code", "an error of no standard")}, // http_400
	} {
		if f.outage {
			e.em.SetOutage(f.fault)
		} else {
			e.em.Inject(f.fault)
		}
		from := e.logs.Len()
		if tok, err := d.client.Refresh("ci"); err == nil {
			e.saw(tok.AccessToken)
			t.Fatalf("refresh ci with a fault of status %d succeeded", f.fault.Status)
		}
		e.waitRefreshes(t, from, 1)
		e.em.ClearFaults()
	}

	// Requests of a caller who may use no profile: refused, and counted
	// as denied under the profile's name only if it exists.
	denied := map[string]float64{}
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, req := range []struct{ method, path string }{
			{"GET", "/v1/token/ci"},
			{"POST", "/v1/token/ci/refresh"},
			{"GET", "/v1/token/nosuch"},
		} {
			if status, _ := requestAs(t, e.socket, otherUID, req.method, req.path); status != http.StatusForbidden {
				t.Errorf("%s %s as uid %d: status %d, want 403", req.method, req.path, otherUID, status)
			}
		}
		denied = map[string]float64{"profile=ci,result=denied": 2, "profile=,result=denied": 1}
	} else {
		t.Log("not root: the denied requests (and /v1/metrics refused to another uid) are not checked")
	}

	text := scrapeSocket(t, d.socket)
	families := parseMetrics(t, text)

	t.Run("token requests", func(t *testing.T) {
		want := map[string]float64{
			"profile=ci,result=ok":      4, // get, refresh, git, docker
			"profile=ci,result=error":   5, // the failed refreshes
			"profile=imp,result=ok":     1, // import
			"profile=imp,result=error":  2, // get before the import, import of garbage
			"profile=,result=not_found": 3, // get nosuch, git and docker matching nothing
		}
		for k, v := range denied {
			want[k] = v
		}
		checkSeries(t, families, "tokd_token_requests_total", want)
	})
	t.Run("refreshes", func(t *testing.T) {
		checkSeries(t, families, "tokd_refreshes_total", map[string]float64{
			"profile=ci,result=ok":       2, // start, refresh
			"profile=ci,result=error":    5,
			"profile=other,result=ok":    1,
			"profile=other,result=error": 0,
			"profile=down,result=ok":     0,
			"profile=down,result=error":  1,
			"profile=imp,result=ok":      0, // import-only: never fetches, yet present
			"profile=imp,result=error":   0,
		})
		h := family(t, families, "tokd_refresh_duration_seconds").GetMetric()[0].GetHistogram()
		if got := h.GetSampleCount(); got != 9 {
			t.Errorf("tokd_refresh_duration_seconds_count = %d, want 9 (every counted refresh)", got)
		}
		var bounds []float64
		for _, b := range h.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		// The exposition adds the +Inf bucket.
		if want := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, math.Inf(1)}; !cmp.Equal(bounds, want) {
			t.Errorf("tokd_refresh_duration_seconds buckets %v, want %v", bounds, want)
		}
	})
	t.Run("token endpoint errors", func(t *testing.T) {
		checkSeries(t, families, "tokd_token_endpoint_errors_total", map[string]float64{
			"code=temporarily_unavailable,profile=ci": 1,
			"code=http_503,profile=ci":                1,
			"code=server_error,profile=ci":            1,
			"code=invalid_grant,profile=ci":           1,
			"code=http_400,profile=ci":                1,
			"code=network,profile=down":               1,
		})
	})
	t.Run("token expiry", func(t *testing.T) {
		other := profileStatus(d.status(t), "other")
		if other == nil || other.ExpiresAt == nil {
			t.Fatalf("status of other = %+v, want a token", other)
		}
		got := seriesValues(t, families, "tokd_token_expiry_timestamp_seconds")
		want := map[string]float64{
			"profile=ci":    unixSeconds(ci.ExpiresAt),
			"profile=imp":   unixSeconds(imp.ExpiresAt),
			"profile=other": unixSeconds(*other.ExpiresAt),
			// down holds no token: no series.
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-3)); diff != "" {
			t.Errorf("tokd_token_expiry_timestamp_seconds (-want +got):\n%s", diff)
		}
		// The imported token's expiry is its JWT's exp, whole seconds.
		if got["profile=imp"] != float64(imp.ExpiresAt.Unix()) {
			t.Errorf("expiry of imp = %v, want the exp of its JWT, %d", got["profile=imp"], imp.ExpiresAt.Unix())
		}
	})
	t.Run("build info, store, runtime", func(t *testing.T) {
		bi := family(t, families, "tokd_build_info").GetMetric()
		if len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 {
			t.Fatalf("tokd_build_info = %v, want one series of value 1", bi)
		}
		labels := labelMap(bi[0])
		if labels["goversion"] != runtime.Version() || labels["version"] == "" {
			t.Errorf("tokd_build_info labels %v, want goversion %s and a version", labels, runtime.Version())
		}
		checkSeries(t, families, "tokd_store_writable", map[string]float64{"": 1})
		for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_open_fds"} {
			family(t, families, name)
		}
	})
	t.Run("lint", func(t *testing.T) {
		problems, err := testutil.GatherAndLint(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			return familySlice(families), nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			t.Skip("promtool is not on PATH: `promtool check metrics` not run")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})
	t.Run("no token or secret", func(t *testing.T) {
		secret, err := os.ReadFile(e.secPath)
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		secrets := append(slices.Clone(e.tokens), strings.TrimSpace(string(secret)))
		e.mu.Unlock()
		if len(secrets) < 4 {
			t.Fatalf("the test saw only %d tokens and secrets", len(secrets))
		}
		for _, s := range secrets {
			if how := leak([]byte(text), s); how != "" {
				t.Errorf("the metrics hold a token or secret (%.12s...): %s", s, how)
			}
		}
	})
	t.Run("metrics_address serves the same metrics", func(t *testing.T) {
		status, tcpText := get(t, http.DefaultClient, "http://"+metricsAddr+"/metrics")
		if status != http.StatusOK {
			t.Fatalf("GET /metrics on %s: status %d", metricsAddr, status)
		}
		// go_* and process_* move between two scrapes; tokd's own do not.
		if diff := cmp.Diff(tokdLines(text), tokdLines(tcpText)); diff != "" {
			t.Errorf("tokd_* on metrics_address differ from the socket's (-socket +tcp):\n%s", diff)
		}
		if status, _ := get(t, http.DefaultClient, "http://"+metricsAddr+"/v1/status"); status != http.StatusNotFound {
			t.Errorf("GET /v1/status on metrics_address: status %d, want 404: only /metrics is served there", status)
		}
	})
	t.Run("another uid may not read the metrics on the socket", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to connect as another uid")
		}
		status, body := requestAs(t, e.socket, otherUID, "GET", "/v1/metrics")
		if status != http.StatusForbidden || strings.Contains(body, "tokd_") {
			t.Errorf("GET /v1/metrics as uid %d: status %d, body %q; want 403 and no metrics", otherUID, status, body)
		}
	})

	t.Run("reload drops the series of a removed profile", func(t *testing.T) {
		e.writeConfig(metricsConfig(e, metricsAddr, downAddr, importProfile("fresh"))...)
		if got := d.reload(t); got != "reloaded" {
			t.Fatalf("reload %s; logs:\n%s", got, e.logs.String())
		}
		families := parseMetrics(t, scrapeSocket(t, d.socket))
		for name, mf := range families {
			for _, m := range mf.GetMetric() {
				if labelMap(m)["profile"] == "other" {
					t.Errorf("%s{%s} is still exported after other was removed", name, seriesKey(m))
				}
			}
		}
		got := seriesValues(t, families, "tokd_refreshes_total")
		for k, v := range map[string]float64{
			"profile=fresh,result=ok":    0, // added: present at 0 at once
			"profile=fresh,result=error": 0,
			"profile=ci,result=ok":       2, // kept: unchanged
			"profile=ci,result=error":    5,
		} {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("tokd_refreshes_total{%s} = %v (present: %t), want %v", k, g, ok, v)
			}
		}
	})
}

// TestMetricsAddressInUse runs the daemon with a metrics_address that
// another process holds: Run fails, naming the key, before it serves.
func TestMetricsAddressInUse(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e.writeConfig(fmt.Sprintf("metrics_address = %q\n", ln.Addr().String()), e.jwtProfile("ci"))
	cfg, err := e.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	err = e.runFailing(t, e.baseOptions(cfg))
	if err == nil || !strings.Contains(err.Error(), "metrics_address "+ln.Addr().String()) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("daemon.Run with metrics_address in use: %v, want an error naming metrics_address and EADDRINUSE", err)
	}
	if _, err := os.Lstat(e.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket exists after the failed start (%v)", err)
	}
}

// metricsConfig returns the configuration of TestMetrics: ci (with git
// and docker settings), down (whose token endpoint is downAddr, where
// nothing listens), imp (import only) and the profile extra.
func metricsConfig(e *env, metricsAddr, downAddr, extra string) []string {
	return []string{
		fmt.Sprintf("metrics_address = %q\n", metricsAddr),
		e.jwtProfile("ci",
			"[profiles.ci.git]", `urls = ["https://git.example.com/team/"]`,
			"[profiles.ci.docker]", `registries = ["registry.example.com"]`),
		e.jwtProfile("down", fmt.Sprintf("token_url = %q", "http://"+downAddr+"/oauth2/v1/token")),
		importProfile("imp"),
		extra,
	}
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago: the configuration needs a concrete port.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitRefreshes waits until exactly n fetches have ended since the log
// offset from: the cache logs a "token refresh" line for each, after
// reporting it to the metrics.
func (e *env) waitRefreshes(t *testing.T, from, n int) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		e.logs.mu.Lock()
		text := e.logs.buf.String()[from:]
		changed := e.logs.changed
		e.logs.mu.Unlock()
		switch got := strings.Count(text, `msg="token refresh"`); {
		case got == n:
			return
		case got > n:
			t.Fatalf("%d fetches ended, want %d; logs since:\n%s", got, n, text)
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("fewer than %d fetches ended after %v; logs since:\n%s", n, waitTimeout, text)
		}
	}
}

// scrapeSocket reads /v1/metrics on the socket as this process, which
// runs the daemon and so may.
func scrapeSocket(t *testing.T, socket string) string {
	t.Helper()
	status, body := get(t, rawClient(socket), "http://tokd/v1/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/metrics: status %d: %s", status, body)
	}
	return body
}

// get returns the status and body of a GET of url.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// requestAs sends one request over the socket from a connection made as
// uid (group uid, no supplementary groups) and returns the answer's status
// and body.
func requestAs(t *testing.T, socket string, uid uint32, method, path string) (int, string) {
	t.Helper()
	conns := make(chan net.Conn, 1)
	conns <- dialAs(t, socket, uid)
	c := &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) {
				select {
				case conn := <-conns:
					return conn, nil
				default:
					return nil, errors.New("requestAs makes one connection")
				}
			},
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequest(method, "http://tokd"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s as uid %d: %v", method, path, uid, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// dialAs connects to the socket as uid, so that the daemon's SO_PEERCRED
// reports that caller. Linux credentials belong to threads: the raw
// system calls change only the calling one (syscall.Setuid would change
// every thread of the process). The goroutine keeps its thread locked and
// exits, so that the thread, and the credentials with it, end there.
func dialAs(t *testing.T, socket string, uid uint32) net.Conn {
	t.Helper()
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		id := uintptr(uid)
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); errno != 0 {
			done <- result{err: fmt.Errorf("setgroups: %w", errno)}
			return
		}
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESGID, id, id, id); errno != 0 {
			done <- result{err: fmt.Errorf("setresgid: %w", errno)}
			return
		}
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, id, id, id); errno != 0 {
			done <- result{err: fmt.Errorf("setresuid: %w", errno)}
			return
		}
		conn, err := net.Dial("unix", socket)
		done <- result{conn, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("connecting as uid %d: %v", uid, r.err)
	}
	return r.conn
}

// parseMetrics parses the text exposition format.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the metrics: %v\n%s", err, text)
	}
	return families
}

// familySlice returns the families sorted by name, as a Gatherer does.
func familySlice(families map[string]*dto.MetricFamily) []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(families))
	for _, mf := range families {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// family returns the named family, failing t if it is missing.
func family(t *testing.T, families map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	t.Helper()
	mf, ok := families[name]
	if !ok || len(mf.GetMetric()) == 0 {
		t.Fatalf("no metric %s", name)
	}
	return mf
}

// seriesValues returns the value of every series of a counter or gauge,
// by seriesKey.
func seriesValues(t *testing.T, families map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for _, m := range family(t, families, name).GetMetric() {
		switch {
		case m.Counter != nil:
			got[seriesKey(m)] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			got[seriesKey(m)] = m.GetGauge().GetValue()
		default:
			t.Fatalf("%s{%s} is neither a counter nor a gauge", name, seriesKey(m))
		}
	}
	return got
}

// checkSeries compares every series of a counter or gauge with want.
func checkSeries(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]float64) {
	t.Helper()
	if diff := cmp.Diff(want, seriesValues(t, families, name)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// seriesKey names a series by its labels: "code=http_503,profile=ci".
func seriesKey(m *dto.Metric) string {
	var pairs []string
	for _, l := range m.GetLabel() {
		pairs = append(pairs, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func labelMap(m *dto.Metric) map[string]string {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	return labels
}

// unixSeconds is t in seconds since the epoch, as the expiry gauge says.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / float64(time.Second)
}

// tokdLines returns the lines of tokd's own metrics in an exposition.
func tokdLines(text string) []string {
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "tokd_") || strings.HasPrefix(line, "# HELP tokd_") || strings.HasPrefix(line, "# TYPE tokd_") {
			lines = append(lines, line)
		}
	}
	return lines
}

// TestRefusedRefreshTokenCounted: when the endpoint refuses the refresh
// token and tokd falls back to the profile's own grant, the refresh
// succeeds, and the refusal is still counted in
// tokd_token_endpoint_errors_total and logged.
func TestRefusedRefreshTokenCounted(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci", "refresh_token = true"))
	d := e.start()
	first := d.get(t, "ci")
	e.saw(first.AccessToken)

	e.em.Inject(emulator.ErrorFault(http.StatusBadRequest, "invalid_grant", "refresh token revoked"))
	before := e.requests()
	second := d.refresh(t, "ci")
	e.saw(second.AccessToken)
	if second.AccessToken == first.AccessToken || e.requests()-before != 2 {
		t.Fatalf("refresh after a refused refresh token: same token %v, %d requests; want a new token from 2",
			second.AccessToken == first.AccessToken, e.requests()-before)
	}
	families := parseMetrics(t, scrapeSocket(t, d.socket))
	checkSeries(t, families, "tokd_token_endpoint_errors_total", map[string]float64{"code=invalid_grant,profile=ci": 1})
	if got := seriesValues(t, families, "tokd_refreshes_total"); got["profile=ci,result=error"] != 0 {
		t.Errorf("the fallback's refresh counted as an error: %v", got)
	}
	if !strings.Contains(e.logs.String(), "refused the refresh token") {
		t.Errorf("the refusal was not logged:\n%s", e.logs.String())
	}
}
