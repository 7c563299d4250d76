// Package benchenv sets up what tokd's benchmarks run against: the
// identity-domain emulator served on loopback, the demo app's key and
// secret on disk, and tokd configurations with one or many profiles of
// that app. It counts the token requests the emulator receives, per
// second, so that a benchmark can relate tokd's CPU to the refreshes it
// made and see how they bunch.
package benchenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokd/tokd/emulator"
)

// Env is a running emulator with the demo app's credentials in Dir.
type Env struct {
	Dir       string
	DomainURL string
	App       *emulator.DevApp
	Emulator  *emulator.Emulator

	srv *http.Server

	mu       sync.Mutex // guards the fields below
	total    int
	failed   int           // answers other than 200
	perSec   map[int64]int // unix second -> token requests arriving in it
	firstReq time.Time
}

// Start serves a fresh dev emulator (emulator.NewDev) on 127.0.0.1 and
// writes the demo app's user key and client secret into dir.
func Start(dir string, opts emulator.Options) (*Env, error) {
	em, app, err := emulator.NewDev(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator listener: %w", err)
	}
	e := &Env{Dir: dir, DomainURL: "http://" + ln.Addr().String(), App: app, Emulator: em, perSec: map[int64]int{}}
	if err := em.SetDomainURL(e.DomainURL); err != nil {
		ln.Close()
		return nil, err
	}
	for name, data := range map[string][]byte{"user.pem": app.KeyPEM, "client.secret": []byte(app.ClientSecret + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			ln.Close()
			return nil, err
		}
	}
	e.srv = &http.Server{Handler: e.count(em), ReadHeaderTimeout: 5 * time.Second}
	go e.srv.Serve(ln)
	return e, nil
}

// Close stops the emulator.
func (e *Env) Close() error { return e.srv.Close() }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (e *Env) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != emulator.TokenPath {
			h.ServeHTTP(w, r)
			return
		}
		now := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		e.mu.Lock()
		if e.total == 0 {
			e.firstReq = now
		}
		e.total++
		e.perSec[now.Unix()]++
		if sw.status != http.StatusOK {
			e.failed++
		}
		e.mu.Unlock()
	})
}

// TokenRequests returns the number of token requests so far and how many
// of them were not answered 200.
func (e *Env) TokenRequests() (total, failed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total, e.failed
}

// PeakPerSecond returns the largest number of token requests that arrived
// within one calendar second in [from, to), and the mean rate over it.
func (e *Env) PeakPerSecond(from, to time.Time) (peak int, mean float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sum := 0
	for s := from.Unix(); s < to.Unix(); s++ {
		n := e.perSec[s]
		peak = max(peak, n)
		sum += n
	}
	if secs := to.Unix() - from.Unix(); secs > 0 {
		mean = float64(sum) / float64(secs)
	}
	return peak, mean
}

// Config describes a tokd configuration for the demo app.
type Config struct {
	Socket, StateDir string
	// Profiles is the number of profiles; 1 names it "demo" with the git
	// and docker sections of tokd --dev, more are p0000, p0001, ...
	Profiles int
	// Grant is "jwt-bearer" (a user assertion signed per fetch) or
	// "client_credentials".
	Grant string
	// RefreshToken adds offline_access: fetches after the first use the
	// refresh_token grant.
	RefreshToken bool
	// Scopes default to urn:opc:idm:__myscopes__.
	Scopes []string
}

// WriteConfig writes c as a tokd configuration file at path; the key and
// secret it names are those Start wrote.
func (e *Env) WriteConfig(path string, c Config) error {
	if c.Profiles < 1 {
		c.Profiles = 1
	}
	if c.Grant == "" {
		c.Grant = "jwt-bearer"
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{emulator.ScopeMyScopes}
	}
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "socket = %s\nstate_dir = %s\n", q(c.Socket), q(c.StateDir))
	scopes := make([]string, len(c.Scopes))
	for i, s := range c.Scopes {
		scopes[i] = q(s)
	}
	for i := range c.Profiles {
		name := "demo"
		if c.Profiles > 1 {
			name = fmt.Sprintf("p%04d", i)
		}
		fmt.Fprintf(&b, "\n[profiles.%s]\ndomain_url = %s\nclient_id = %s\nclient_secret_file = %s\ngrant_type = %s\nscopes = [%s]\nrefresh_token = %t\n",
			name, q(e.DomainURL), q(e.App.ClientID), q(filepath.Join(e.Dir, "client.secret")), q(c.Grant),
			strings.Join(scopes, ", "), c.RefreshToken)
		if c.Grant == "jwt-bearer" {
			fmt.Fprintf(&b, "\n[profiles.%s.assertion]\nsubject = %s\nkey_file = %s\nkey_id = %s\nlifetime = \"5m\"\n",
				name, q(e.App.User), q(filepath.Join(e.Dir, "user.pem")), q(e.App.CertAlias))
		}
		if c.Profiles == 1 {
			fmt.Fprintf(&b, "\n[profiles.%s.git]\nurls = [\"https://git.example.com/\"]\n\n[profiles.%s.docker]\nregistries = [\"registry.example.com\"]\n", name, name)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
