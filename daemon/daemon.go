// Package daemon runs tokd: it opens the store, keeps every profile's
// token warm through the cache, and serves the socket API, authorising
// each caller by SO_PEERCRED. It owns the lifecycle: reload on SIGHUP,
// and an orderly shutdown (stop accepting, finish in-flight requests,
// close the store).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/source"
	"github.com/tokd/tokd/store"
)

// Options configure Run.
type Options struct {
	// Config is the validated configuration to serve.
	Config *config.Config
	// Reload reads the configuration again; Run calls it on SIGHUP. Nil
	// disables reloading.
	Reload func() (*config.Config, error)
	// Socket and StateDir override the configuration's.
	Socket   string
	StateDir string
	// CredentialsDirectory is systemd's $CREDENTIALS_DIRECTORY, where a
	// tokd.key sealing key is looked for.
	CredentialsDirectory string
	// Listener, when set, is served instead of binding Socket (socket
	// activation).
	Listener net.Listener
	// Hangup delivers reload requests; nil means Run listens for SIGHUP.
	Hangup <-chan os.Signal
	// Logger receives tokd's logs; nil discards them.
	Logger *slog.Logger
	// Clock drives the cache; nil means the real clock.
	Clock cache.Clock
	// Ready, when set, is called once the store is open, the socket is
	// accepting and the cache has planned its fetches, with the socket's
	// path.
	Ready func(socket string)
	// Stopping, when set, is called as shutdown begins.
	Stopping func()
	// Reloading and Reloaded, when set, are called around a reload;
	// Reloaded gets the reason a new configuration was refused, or nil.
	Reloading func()
	Reloaded  func(error)
}

// shutdownGrace bounds how long in-flight requests may take to finish.
const shutdownGrace = 10 * time.Second

// Run serves until ctx ends, then shuts down in order. It returns nil
// after a clean shutdown.
func Run(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	stateDir := firstNonEmpty(opts.StateDir, cfg.StateDir, DefaultStateDir())
	socket := firstNonEmpty(opts.Socket, cfg.Socket, DefaultSocket())
	var now func() time.Time = time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}

	st, err := openStore(stateDir, opts.CredentialsDirectory, log)
	if err != nil {
		return err
	}
	m := newMetrics(log)
	var cacheStore cache.Store
	if st != nil {
		defer st.Close()
		cacheStore = m.watchStore(storeAdapter{st})
	} else {
		m.storeWritable.Store(false)
	}
	tokens := cache.New(cache.Options{
		Clock: opts.Clock, Store: cacheStore, Logger: log, Observe: m.observeFetch,
		StartJitter: cfg.StartJitter.Duration,
	})
	m.watchTokens(tokens.Status)
	m.setProfiles(cfg.ProfileNames())
	trs := &transports{}
	defer trs.closeIdle()
	tokens.SetProfiles(cacheProfiles(cfg, opts.Clock, trs, m, log))
	var records []store.Record
	var bad []*store.RecordError
	if st != nil {
		records, bad, err = st.LoadAll()
		if err != nil {
			log.Error("reading stored tokens; starting empty", "err", err)
		}
	}
	for _, e := range bad {
		log.Warn("stored token unreadable; it will be fetched anew", "err", e)
	}
	restored := make([]cache.Record, len(records))
	for i, r := range records {
		restored[i] = cache.Record(r)
	}
	tokens.Restore(restored)

	srv := newServer(tokens, cfg, uint32(os.Getuid()), now, log, m)
	metricsSrv, metricsLn, err := m.listen(cfg.MetricsAddress, log)
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	ln := opts.Listener
	if ln == nil {
		ul, err := listenUnix(socket)
		if err != nil {
			return err
		}
		ln = ul
	} else if addr, ok := ln.Addr().(*net.UnixAddr); ok {
		socket = addr.Name
	}
	httpSrv := srv.socketServer()

	hangup := opts.Hangup
	if hangup == nil && opts.Reload != nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		hangup = ch
	}

	// The cache runs until the server has drained, so that requests in
	// flight when shutdown begins can still get the token they wait for.
	cacheCtx, stopCache := context.WithCancel(context.Background())
	defer stopCache()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return tokens.Run(cacheCtx) })
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving %s: %w", socket, err)
		}
		return nil
	})
	if metricsSrv != nil {
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving metrics on %s: %w", metricsLn.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if opts.Stopping != nil {
			opts.Stopping()
		}
		// Stop accepting, let in-flight requests finish, then stop the cache.
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if metricsSrv != nil {
			if err := metricsSrv.Shutdown(sctx); err != nil {
				log.Warn("shutdown: metrics scrapes still in flight were cut off", "err", err)
			}
		}
		if err := httpSrv.Shutdown(sctx); err != nil {
			log.Warn("shutdown: requests still in flight were cut off", "err", err)
		}
		stopCache()
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hangup:
				if opts.Reloading != nil {
					opts.Reloading()
				}
				err := reload(opts, trs, tokens, srv, m, log)
				if opts.Reloaded != nil {
					opts.Reloaded(err)
				}
			}
		}
	})
	if metricsLn != nil {
		log.Info("metrics serving", "address", metricsLn.Addr().String(), "path", "/metrics")
	}
	// Ready means the cache is running: a status read after it shows the
	// plan the cache follows, start jitter included.
	// A daemon already stopping (its context ended, or serving failed)
	// never says it is ready: READY=1 would follow STOPPING=1.
	select {
	case <-tokens.Started():
	case <-gctx.Done():
	}
	if gctx.Err() == nil {
		log.Info("tokd serving", "socket", socket, "profiles", len(cfg.Profiles), "state_dir", stateDir)
		if opts.Ready != nil {
			opts.Ready(socket)
		}
	}
	err = g.Wait()
	log.Info("tokd stopped")
	return err
}

// reload reads the configuration again (opts.Reload) and applies it. An
// invalid new configuration is refused and the old one keeps serving.
func reload(opts Options, trs *transports, tokens *cache.Cache, srv *server, m *metrics, log *slog.Logger) error {
	if opts.Reload == nil {
		log.Warn("reload requested, but this tokd has no configuration file to reload")
		return errors.New("no configuration file to reload")
	}
	cfg, err := opts.Reload()
	if err != nil {
		log.Error("reload refused; the previous configuration keeps serving", "err", err)
		return err
	}
	warnRestartOnly(opts, cfg, log)
	// A profile the server admits must exist in the cache at every
	// moment: admit only those in both configurations, switch the cache,
	// then admit the new set. The metrics learn the new set first, so
	// that they count the first fetch of an added profile.
	srv.narrowTo(cfg)
	m.setProfiles(cfg.ProfileNames())
	tokens.SetProfiles(cacheProfiles(cfg, opts.Clock, trs, m, log))
	trs.dropUnused()
	srv.setConfig(cfg)
	log.Info("configuration reloaded", "profiles", len(cfg.Profiles))
	return nil
}

// warnRestartOnly warns of each setting tokd reads only at start whose
// value in next differs from the one it serves, the start's (opts.Config),
// so that a reload does not seem to apply what it cannot. The socket and
// the state directory that a flag overrides, or a socket that systemd
// passed, are not the configuration's to change.
func warnRestartOnly(opts Options, next *config.Config, log *slog.Logger) {
	serving := opts.Config
	if serving == nil {
		return
	}
	type setting struct{ key, serving, configured string }
	settings := []setting{
		{"metrics_address", serving.MetricsAddress, next.MetricsAddress},
		{"start_jitter", serving.StartJitter.Duration.String(), next.StartJitter.Duration.String()},
	}
	if opts.Socket == "" && opts.Listener == nil {
		settings = append(settings, setting{"socket", firstNonEmpty(serving.Socket, DefaultSocket()), firstNonEmpty(next.Socket, DefaultSocket())})
	}
	if opts.StateDir == "" {
		settings = append(settings, setting{"state_dir", firstNonEmpty(serving.StateDir, DefaultStateDir()), firstNonEmpty(next.StateDir, DefaultStateDir())})
	}
	for _, st := range settings {
		if st.serving != st.configured {
			log.Warn(st.key+" changed; the change takes effect at the next restart", "serving", st.serving, "configured", st.configured)
		}
	}
}

// openStore opens the sealed store in stateDir. On a read-only file
// system it returns nil and no error: tokd then serves from memory, says
// so, and its tokens do not survive a restart.
func openStore(stateDir, credentialsDir string, log *slog.Logger) (*store.Store, error) {
	key, keySource, err := store.LoadKey(stateDir, credentialsDir)
	if err != nil && !errors.Is(err, syscall.EROFS) {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	var st *store.Store
	if err == nil {
		st, err = store.Open(stateDir, store.Options{Key: key, Logger: log})
	}
	switch {
	case errors.Is(err, syscall.EROFS):
		log.Error("the state directory is read-only: serving from memory; tokens will not survive a restart",
			"state_dir", stateDir, "err", err)
		return nil, nil
	case err != nil:
		return nil, err
	}
	log.Info("store open", "path", st.Path(), "key", string(keySource))
	return st, nil
}

// storeAdapter lets the cache persist into the store.
type storeAdapter struct{ st *store.Store }

func (a storeAdapter) Put(r cache.Record) error    { return a.st.Put(store.Record(r)) }
func (a storeAdapter) Delete(profile string) error { return a.st.Delete(profile) }

// cacheProfiles returns the cache's profiles for cfg, whose token
// requests share the transports of trs by CA pool. A refresh token or
// grant the endpoint refuses before a fallback to the profile's own grant
// is counted in m and logged (the cache sees only the fallback); m and
// log may be nil.
func cacheProfiles(cfg *config.Config, clock cache.Clock, trs *transports, m *metrics, log *slog.Logger) []cache.Profile {
	trs.next()
	ps := make([]cache.Profile, 0, len(cfg.Profiles))
	for _, name := range cfg.ProfileNames() {
		p := cfg.Profiles[name]
		src := source.NewWithTransport(p, trs.forRoots(p.Creds.RootCAs))
		if clock != nil {
			src.SetClock(clock.Now)
		}
		src.OnRefreshRefused(func(err error) {
			if m != nil {
				m.observeEndpointError(name, err)
			}
			if log != nil {
				log.Warn("token endpoint refused the refresh token; fetching with the profile's own grant", "profile", name, "err", err)
			}
		})
		ps = append(ps, cache.Profile{Name: name, Fingerprint: p.Fingerprint(), Fetcher: src, CanFetch: src.CanFetch()})
	}
	return ps
}

func policy(cfg *config.Config) Policy {
	pol := make(Policy, len(cfg.Profiles))
	for name, p := range cfg.Profiles {
		pol[name] = Access{UIDs: p.AllowedUIDs, GIDs: p.AllowedGIDs}
	}
	return pol
}

// DefaultSocket is the socket path when neither the flag nor the
// configuration names one; systemd's $RUNTIME_DIRECTORY comes first.
func DefaultSocket() string {
	if dir := os.Getenv("RUNTIME_DIRECTORY"); dir != "" {
		return filepath.Join(firstPath(dir), "tokd.sock")
	}
	return apitype.DefaultSocket(os.Getuid(), os.Getenv("XDG_RUNTIME_DIR"))
}

// DefaultStateDir is the state directory when neither the flag nor the
// configuration names one: systemd's $STATE_DIRECTORY, /var/lib/tokd for
// root, else $XDG_STATE_HOME/tokd (~/.local/state/tokd).
func DefaultStateDir() string {
	if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
		return firstPath(dir)
	}
	if os.Getuid() == 0 {
		return "/var/lib/tokd"
	}
	if dir := os.Getenv("XDG_STATE_HOME"); dir != "" {
		return filepath.Join(dir, "tokd")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "tokd-"+fmt.Sprint(os.Getuid()))
	}
	return filepath.Join(home, ".local", "state", "tokd")
}

// firstPath returns the first of systemd's colon-separated directories.
func firstPath(list string) string {
	first, _, _ := strings.Cut(list, ":")
	return first
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
