package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/oauth"
)

// The metrics are tokd's interface to Prometheus; their names, types and
// labels are part of the product (packaging/prometheus/tokd-alerts.yml
// relies on them):
//
//	tokd_token_requests_total{profile,result}         counter
//	tokd_refreshes_total{profile,result}              counter
//	tokd_refresh_duration_seconds                     histogram
//	tokd_token_expiry_timestamp_seconds{profile}      gauge
//	tokd_token_endpoint_errors_total{profile,code}    counter
//	tokd_store_writable                               gauge
//	tokd_build_info{version,goversion}                gauge, always 1
//
// plus the Go runtime's go_* and the process's process_* metrics.
// tokd_token_endpoint_errors_total counts every failed token request,
// including a refused refresh token that a fallback to the profile's own
// grant made good (that refresh counts as ok in tokd_refreshes_total).
//
// Every label value comes from a bounded set: profile is a configured
// profile's name or "" (never a name a caller sent), result and code are
// constants of this file, version and goversion are fixed at build. No
// metric carries token material or error text.

// The results of tokd_token_requests_total: the class of the answer.
const (
	resultOK       = "ok"        // a token was served (200)
	resultDenied   = "denied"    // the caller may not use the profile (403)
	resultNotFound = "not_found" // no such profile, or none matches (404)
	resultError    = "error"     // anything else: no token to serve, bad input
)

// The results of tokd_refreshes_total. The alert rules expect exactly these.
const (
	refreshOK    = "ok"
	refreshError = "error"
)

// endpointErrorCodes are the RFC 6749 §5.2 error codes that
// tokd_token_endpoint_errors_total reports as such; any other code is
// reported by HTTP status, so that a server cannot grow the label set.
var endpointErrorCodes = map[string]bool{
	oauth.CodeInvalidRequest:       true,
	oauth.CodeInvalidClient:        true,
	oauth.CodeInvalidGrant:         true,
	oauth.CodeUnauthorizedClient:   true,
	oauth.CodeUnsupportedGrantType: true,
	oauth.CodeInvalidScope:         true,
	oauth.CodeServerError:          true,
	oauth.CodeTemporarilyUnavail:   true,
}

// refreshBuckets span a token request from a fast local identity domain
// (5 ms) to the default per-request timeout (30 s).
var refreshBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// metrics holds tokd's collectors, on a registry of its own: nothing a
// library registers globally leaks into tokd's output.
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler // serves registry in the exposition format

	tokenRequests   *prometheus.CounterVec
	refreshes       *prometheus.CounterVec
	refreshDuration prometheus.Histogram
	endpointErrors  *prometheus.CounterVec
	storeWritable   atomic.Bool // whether the last write to the store succeeded

	// mu guards profiles. Label values are added and deleted under it, so
	// that no series outlives its profile's removal.
	mu       sync.Mutex
	profiles map[string]bool // the configured profiles
}

// newMetrics returns tokd's metrics, with no profile configured yet
// (setProfiles) and no tokens watched (watchTokens). Errors of a scrape go
// to log.
func newMetrics(log *slog.Logger) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		profiles: map[string]bool{},
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokd_token_requests_total",
			Help: "Token requests on the socket API (get, refresh, import, git, docker) by result: ok, denied, not_found or error. The profile is \"\" when the caller named none that exists.",
		}, []string{"profile", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokd_refreshes_total",
			Help: "Token fetches from the identity domain by result: ok or error.",
		}, []string{"profile", "result"}),
		refreshDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokd_refresh_duration_seconds",
			Help:    "Duration of the token fetches counted by tokd_refreshes_total.",
			Buckets: refreshBuckets,
		}),
		endpointErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokd_token_endpoint_errors_total",
			Help: "Failed token requests by cause (a fetch that failed, or a refused refresh token before a fallback): an RFC 6749 error code, http_NNN for another HTTP answer, timeout, network or other.",
		}, []string{"profile", "code"}),
	}
	m.storeWritable.Store(true)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tokd_build_info",
		Help:        "Always 1; the labels say which tokd this is.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	m.registry.MustRegister(
		m.tokenRequests, m.refreshes, m.refreshDuration, m.endpointErrors, buildInfo,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokd_store_writable",
			Help: "1 when the last write to the token store succeeded, 0 when it failed.",
		}, func() float64 {
			if m.storeWritable.Load() {
				return 1
			}
			return 0
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.registry,
	})
	return m
}

// buildVersion returns the main module's version, "(devel)" when the
// binary carries none.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// watchTokens exports the expiry of the tokens that status reports,
// computed at each scrape.
func (m *metrics) watchTokens(status func() []cache.ProfileStatus) {
	m.registry.MustRegister(expiryCollector{status: status})
}

// watchStore returns st, reporting the outcome of each write in
// tokd_store_writable.
func (m *metrics) watchStore(st cache.Store) cache.Store {
	return observedStore{st: st, ok: &m.storeWritable}
}

// setProfiles makes names the configured profiles, at start and on every
// reload: the refresh counters of new profiles start at 0, so that rate()
// and the alert rules see them from the first scrape, and every series of
// a removed profile is deleted.
func (m *metrics) setProfiles(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]bool, len(names))
	for _, name := range names {
		next[name] = true
		if !m.profiles[name] {
			m.refreshes.WithLabelValues(name, refreshOK)
			m.refreshes.WithLabelValues(name, refreshError)
		}
	}
	for name := range m.profiles {
		if !next[name] {
			gone := prometheus.Labels{"profile": name}
			m.tokenRequests.DeletePartialMatch(gone)
			m.refreshes.DeletePartialMatch(gone)
			m.endpointErrors.DeletePartialMatch(gone)
		}
	}
	m.profiles = next
}

// tokenRequest counts one token request of the socket API. profile is
// what the caller asked for; it becomes a label only if it is configured.
func (m *metrics) tokenRequest(profile, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.profiles[profile] {
		profile = ""
	}
	m.tokenRequests.WithLabelValues(profile, result).Inc()
}

// observeFetch is the cache's Options.Observe. Discarded and cancelled
// fetches are not refreshes anyone waited for and are not counted; nor is
// a fetch of a profile no longer configured.
func (m *metrics) observeFetch(r cache.FetchResult) {
	result := refreshError
	switch r.Outcome {
	case "ok":
		result = refreshOK
	case "retryable_error", "permanent_error":
	default:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.profiles[r.Profile] {
		return
	}
	m.refreshes.WithLabelValues(r.Profile, result).Inc()
	m.refreshDuration.Observe(r.Duration.Seconds())
	if result == refreshError {
		m.countEndpointErrorLocked(r.Profile, r.Err)
	}
}

// observeEndpointError counts err, a token request's failure within a
// fetch that went on (a refused refresh token before the fallback to the
// profile's own grant), in tokd_token_endpoint_errors_total.
func (m *metrics) observeEndpointError(profile string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.profiles[profile] {
		m.countEndpointErrorLocked(profile, err)
	}
}

// countEndpointErrorLocked counts err in tokd_token_endpoint_errors_total
// when it is a token request's failure.
func (m *metrics) countEndpointErrorLocked(profile string, err error) {
	if code := endpointErrorCode(err); code != "" {
		m.endpointErrors.WithLabelValues(profile, code).Inc()
	}
}

// tokenResult is the result of a token request answered with err.
func tokenResult(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, cache.ErrUnknownProfile):
		return resultNotFound
	}
	return resultError
}

// statusResult is the result of a token request refused with an HTTP
// status.
func statusResult(status int) string {
	switch status {
	case http.StatusForbidden:
		return resultDenied
	case http.StatusNotFound:
		return resultNotFound
	}
	return resultError
}

// endpointErrorCode classifies a failed fetch for
// tokd_token_endpoint_errors_total: the RFC 6749 error code when it is a
// known one, else http_NNN for an HTTP answer, timeout or network when no
// answer came, other for the rest. It returns "" when err is not a token
// request's failure (no request was made).
func endpointErrorCode(err error) string {
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		return ""
	}
	switch {
	case endpointErrorCodes[oe.Code]:
		return oe.Code
	case oe.StatusCode >= 100 && oe.StatusCode <= 599:
		return "http_" + strconv.Itoa(oe.StatusCode)
	case oe.StatusCode != 0:
		return "other"
	case isTimeout(oe.Err):
		return "timeout"
	case oe.Retryable:
		// Without an answer, the oauth client marks transport failures
		// retryable and its own failures (signing the assertion, building
		// the request) not.
		return "network"
	}
	return "other"
}

// isTimeout reports whether err is a deadline or a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// expiryDesc describes tokd_token_expiry_timestamp_seconds.
var expiryDesc = prometheus.NewDesc("tokd_token_expiry_timestamp_seconds",
	"When the token held for the profile expires, in seconds since the epoch; absent while none is held.",
	[]string{"profile"}, nil)

// expiryCollector reports the expiry of every held token at scrape time,
// so that the gauge never lags the cache.
type expiryCollector struct {
	status func() []cache.ProfileStatus
}

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.status() {
		if p.ExpiresAt.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
			float64(p.ExpiresAt.UnixNano())/float64(time.Second), p.Name)
	}
}

// observedStore is a cache.Store that records whether its last write
// succeeded.
type observedStore struct {
	st cache.Store
	ok *atomic.Bool
}

func (s observedStore) Put(r cache.Record) error { return s.record(s.st.Put(r)) }

func (s observedStore) Delete(profile string) error { return s.record(s.st.Delete(profile)) }

func (s observedStore) record(err error) error {
	s.ok.Store(err == nil)
	return err
}

// listen binds addr (metrics_address) and returns a server for /metrics
// on it; both are nil when addr is empty.
func (m *metrics) listen(addr string, log *slog.Logger) (*http.Server, net.Listener, error) {
	if addr == "" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics_address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return srv, ln, nil
}
