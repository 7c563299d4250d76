package cache

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tokd/tokd/token"
)

// Fetcher obtains tokens for one profile.
type Fetcher interface {
	// Fetch obtains a new token. refreshToken is the current refresh token,
	// "" when there is none. The fetcher decides between the refresh_token
	// grant and a new assertion, and falls back to the assertion itself
	// when the refresh token is rejected. The token must carry an absolute
	// Expiry; a zero IssuedAt means "now". ctx is the cache's, not a
	// caller's: it ends when the cache stops or after Options.FetchTimeout.
	Fetch(ctx context.Context, refreshToken string) (*token.Token, error)
}

// Profile is one configured profile as the cache sees it.
type Profile struct {
	Name string
	// Fingerprint identifies the settings that produce the profile's
	// tokens. A token obtained under another fingerprint is never served.
	Fingerprint string
	// Fetcher obtains the profile's tokens; nil for a profile that only
	// serves imported tokens and never refreshes them.
	Fetcher Fetcher
	// CanFetch reports whether Fetcher can obtain a token without a refresh
	// token (the profile has an assertion key or a client secret). When
	// false the profile is import-only: the cache calls Fetcher only while
	// it holds a refresh token from Import or from the store.
	CanFetch bool
}

// Record is a token as persisted. Its fields are those of store.Record,
// in the same order, so the daemon converts between the two with
// cache.Record(r) and store.Record(r).
type Record struct {
	Profile      string
	TokenType    string
	AccessToken  string
	RefreshToken string    // may be empty
	Scope        string    // may be empty
	IssuedAt     time.Time // absolute
	Expiry       time.Time // absolute
	Fingerprint  string
}

// Store persists tokens across restarts. *store.Store fits it through a
// two-line adapter converting Record.
type Store interface {
	// Put stores rec under rec.Profile, replacing any record there. The
	// cache calls Put for different profiles concurrently (never for one
	// profile, and never concurrently with Delete), so that a store may
	// commit them together.
	Put(rec Record) error
	// Delete removes the record of profile; no record is not an error.
	Delete(profile string) error
}

// Options configure New. Zero fields take the defaults named Default*.
type Options struct {
	Clock Clock // nil: the system clock
	// Store persists every fetched or imported token; nil keeps them in
	// memory only.
	Store  Store
	Logger *slog.Logger // nil: discard
	// Rand returns a uniform float64 in [0, 1) for the refresh and backoff
	// jitter; nil: math/rand/v2.Float64. The cache calls it with its lock
	// held, never concurrently.
	Rand func() float64
	// Observe, when set, learns the outcome of every fetch (for metrics).
	// It is called without the cache's lock, once per fetch.
	Observe func(FetchResult)

	MinMargin          time.Duration // refresh at least max(MinMargin, L/10) before expiry (capped at L/2)
	MinRefreshInterval time.Duration // between two successful fetches by the scheduler
	ExpirySkew         time.Duration // stop serving min(ExpirySkew, L/10) before expiry
	BaseBackoff        time.Duration // first retry ceiling after a retryable failure
	RateLimitBackoff   time.Duration // first retry ceiling after a rate-limit answer (429), at least BaseBackoff
	MaxBackoff         time.Duration // retry ceiling
	PermanentRetry     time.Duration // retry interval after a permanent failure
	FetchTimeout       time.Duration // bound on one Fetch call

	// StartJitter spreads the first scheduled fetch of a profile that has
	// no token to serve and that nobody has asked for: at Run, and when
	// SetProfiles adds a profile or changes its fingerprint while the cache
	// runs, that fetch happens at a uniform random moment in
	// [0, StartJitter). Get and Refresh still fetch at once. Zero (the
	// default) fetches at once; a fleet sizes it to its identity domain
	// (package comment, "Start jitter").
	StartJitter time.Duration
}

// FetchResult describes one finished fetch. It carries no token material.
type FetchResult struct {
	Profile  string
	Trigger  string // "scheduled", "get", "refresh", ...
	Outcome  string // "ok", "retryable_error", "permanent_error", "discarded" or "cancelled"
	Duration time.Duration
	Err      error // the fetch error, for the error outcomes
}

// State summarises a profile in ProfileStatus.
type State string

// The states of a profile, in the order Status checks them.
const (
	// StateRefreshing: a fetch is in flight.
	StateRefreshing State = "refreshing"
	// StateValid: Get serves a token now (LastError may still report a
	// failing refresh of that token).
	StateValid State = "valid"
	// StateFailing: no token is served and the last attempt failed.
	StateFailing State = "failing"
	// StateExpired: the token expired and no attempt has failed since.
	StateExpired State = "expired"
	// StateEmpty: no token was ever obtained.
	StateEmpty State = "empty"
)

// ProfileStatus describes one profile. It never contains token material.
type ProfileStatus struct {
	Name        string
	State       State
	ExpiresAt   time.Time // expiry of the held token; zero when none
	LastRefresh time.Time // when this process last fetched a token; zero when never
	NextRefresh time.Time // next automatic attempt; zero when none is planned
	LastError   string    // error of the last attempt if it failed, else ""
	LastErrorAt time.Time
	Failures    int // consecutive failed attempts
	// HasRefreshToken reports whether a refresh token is held (never its
	// value).
	HasRefreshToken bool
	StoreError      string
}

// Cache holds the tokens of every profile. Its methods are safe for
// concurrent use.
type Cache struct {
	clock Clock
	store Store
	log   *slog.Logger
	rand  func() float64
	// observe is Options.Observe.
	observe func(FetchResult)
	policy  policy
	// fetchTimeout bounds one Fetch.
	fetchTimeout time.Duration
	// startJitter is Options.StartJitter.
	startJitter time.Duration

	// baseCtx is the parent of every fetch; Run cancels it on return.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	// fetches counts running fetch goroutines, for Run to wait on.
	fetches sync.WaitGroup

	// storeMu orders the calls to store and is taken before mu. persist
	// holds it for reading, so that the Puts of different profiles overlap
	// and the store commits them together; Forget and SetProfiles, which
	// delete records, hold it for writing, so that a record they delete is
	// never written back by a fetch that finished meanwhile: a persist
	// either completes its Put before the Delete, or starts after it and
	// finds its token dropped. Two persists of one profile are ordered by
	// that entry's persistMu.
	storeMu sync.RWMutex

	// mu guards entries, every *entry in it, running and closed.
	mu      sync.Mutex
	entries map[string]*entry
	running bool // Run is scheduling refreshes
	closed  bool // Run has returned
	// started is closed once Run has scheduled every profile.
	started chan struct{}

	hooks hooks
}

// hooks let this package's tests observe the cache. They are set before
// use and are nil in production.
type hooks struct {
	fetchStarted func(profile string) // called with mu held
	fetchDone    func(profile string) // called last by a fetch goroutine
	waiting      func(profile string) // called when Get or Refresh starts waiting
}

// entry is the state of one profile, guarded by Cache.mu.
type entry struct {
	profile Profile
	// gen changes whenever the token is dropped or replaced other than by a
	// fetch; a fetch started under another gen is discarded.
	gen uint64

	tok          *token.Token // held token, RefreshToken included; nil when none
	refreshToken string       // used by the next fetch; may outlive tok (restored expired record) or replace its (a refused late token's)
	serveUntil   time.Time    // tok is served before this time
	refreshAt    time.Time    // when tok is due for refresh (jitter drawn once per token)
	lastRefresh  time.Time    // when this process last fetched a token

	failures        int       // consecutive failed attempts
	lastErr         error     // error of the last attempt if it failed
	lastErrAt       time.Time // when it failed
	notBefore       time.Time // no automatic attempt before this time
	retryAfterUntil time.Time // the server's Retry-After; not even Refresh goes before it
	startAt         time.Time // the start jitter: no scheduled first fetch before this time
	storeErr        string    // last Store error for tok, for Status

	inflight *call
	timer    Timer
	timerAt  time.Time
	timerSeq uint64 // identifies the armed timer; a stale callback sees another value

	// persistMu, not guarded by Cache.mu, serialises the persists of this
	// entry's tokens, taken after Cache.storeMu and before Cache.mu. One
	// fetch in flight per profile is not enough for that: a fetch clears
	// inflight before it persists, so a Refresh or an Import may install a
	// newer token and persist it while the older one's Put is still on
	// its way. Under persistMu each persist checks that its token is still
	// the entry's and writes it, so an older token's Put either finishes
	// before the newer one's starts or is skipped.
	persistMu sync.Mutex
}

// call is one fetch in flight, shared by every Get that waits for it.
type call struct {
	gen    uint64
	cancel context.CancelFunc
	done   chan struct{} // closed when the fields below are set
	tok    *token.Token  // servable copy on success
	err    error         // the fetch error, ErrClosed, or errDiscarded
	// failedAt and retryAt are the failure time and the next automatic
	// attempt when err is a fetch error.
	failedAt, retryAt time.Time
}

// New returns an empty cache. Add profiles with SetProfiles.
func New(opts Options) *Cache {
	c := &Cache{
		clock:        opts.Clock,
		store:        opts.Store,
		log:          opts.Logger,
		rand:         opts.Rand,
		observe:      opts.Observe,
		policy:       newPolicy(opts),
		fetchTimeout: opts.FetchTimeout,
		startJitter:  max(opts.StartJitter, 0),
		entries:      make(map[string]*entry),
		started:      make(chan struct{}),
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if c.fetchTimeout <= 0 {
		c.fetchTimeout = DefaultFetchTimeout
	}
	c.baseCtx, c.cancelBase = context.WithCancel(context.Background())
	return c
}

// SetProfiles sets the configured profiles, at start and on every reload.
// Added profiles appear (and a running cache fetches their tokens);
// removed ones disappear with their stored records; a profile whose
// Fingerprint is unchanged keeps its token, its backoff and its refresh
// schedule, and takes the new Fetcher; a profile whose Fingerprint changed
// loses its token and stored record and starts afresh. Names must be
// unique; profiles with an empty name are ignored.
func (c *Cache) SetProfiles(ps []Profile) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()

	c.mu.Lock()
	now := c.clock.Now()
	var deletes []string
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		if p.Name == "" {
			c.log.Warn("token cache: ignoring a profile with an empty name")
			continue
		}
		seen[p.Name] = true
		e, ok := c.entries[p.Name]
		switch {
		case !ok:
			e = &entry{profile: p}
			c.entries[p.Name] = e
			c.jitterStartLocked(e, now)
			c.log.Info("token cache: profile added", "profile", p.Name)
		case e.profile.Fingerprint != p.Fingerprint:
			c.dropTokenLocked(e)
			e.failures, e.lastErr, e.lastErrAt = 0, nil, time.Time{}
			e.notBefore, e.retryAfterUntil = time.Time{}, time.Time{}
			e.lastRefresh = time.Time{}
			e.profile = p
			c.jitterStartLocked(e, now)
			deletes = append(deletes, p.Name)
			c.log.Info("token cache: profile settings changed; dropped its token", "profile", p.Name)
		default:
			e.profile = p
		}
	}
	for name, e := range c.entries {
		if !seen[name] {
			c.dropTokenLocked(e)
			delete(c.entries, name)
			deletes = append(deletes, name)
			c.log.Info("token cache: profile removed; dropped its token", "profile", name)
		}
	}
	c.scheduleAllLocked()
	c.mu.Unlock()

	if c.store == nil {
		return
	}
	slices.Sort(deletes)
	for _, name := range deletes {
		if err := c.store.Delete(name); err != nil {
			c.log.Error("token cache: deleting the stored token failed", "profile", name, "err", err)
		}
	}
}

// Restore loads persisted records, at start, after SetProfiles. A record is
// served without any token request when its profile exists, its
// Fingerprint matches the profile's and its token is still valid. An
// expired record of a matching profile lends its refresh token to the next
// fetch. Other records are ignored (and logged); Restore deletes nothing.
func (c *Cache) Restore(recs []Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	restored := 0
	for _, rec := range recs {
		e := c.entries[rec.Profile]
		skip := func(reason string) {
			c.log.Info("token cache: not restoring the stored token", "profile", rec.Profile, "reason", reason)
		}
		switch {
		case e == nil:
			skip("profile not configured")
			continue
		case rec.Fingerprint != e.profile.Fingerprint:
			skip("profile settings changed")
			continue
		case rec.AccessToken == "":
			skip("record holds no access token")
			continue
		case e.tok != nil && !rec.Expiry.After(e.tok.Expiry):
			skip("a newer token is held")
			continue
		}
		t := &token.Token{
			AccessToken:  rec.AccessToken,
			TokenType:    rec.TokenType,
			RefreshToken: rec.RefreshToken,
			Scope:        rec.Scope,
			IssuedAt:     rec.IssuedAt,
			Expiry:       rec.Expiry,
		}
		if now.Before(c.policy.serveUntil(t, now)) {
			c.installLocked(e, t, now, false)
			restored++
			continue
		}
		skip("token expired")
		if e.tok == nil && e.refreshToken == "" && rec.RefreshToken != "" {
			e.refreshToken = rec.RefreshToken
		}
	}
	c.log.Info("token cache: restored stored tokens", "restored", restored, "records", len(recs))
	c.scheduleAllLocked()
}

// Get returns a valid token of the profile. It serves the held token when
// there is one; otherwise it waits for the fetch in flight or starts one,
// unless the backoff of a recent failure forbids it, in which case it
// returns a *RefreshError at once, or the server's Retry-After does (after
// an Import reset the backoff), in which case it returns an error naming
// it. ctx bounds only this caller's wait: the fetch goes on for the
// others. The token is the caller's copy and never carries the refresh
// token.
//
// Get returns an error matching ErrUnknownProfile, ErrNoToken or ErrClosed,
// a *RefreshError, the Retry-After error above, or ctx's error.
func (c *Cache) Get(ctx context.Context, name string) (*token.Token, error) {
	return c.obtain(ctx, name, false)
}

// Refresh fetches a new token now, ignoring the refresh schedule and the
// backoff of earlier failures but not a server's Retry-After, and returns
// it. If a fetch is already in flight it waits for that one. On failure the
// held token, if still valid, keeps being served.
func (c *Cache) Refresh(ctx context.Context, name string) (*token.Token, error) {
	return c.obtain(ctx, name, true)
}

// obtain serves Get (a valid token, fetched only when none is held) and
// Refresh (forced: always a new one). Either joins a fetch in flight.
func (c *Cache) obtain(ctx context.Context, name string, forced bool) (*token.Token, error) {
	trigger := "get"
	if forced {
		trigger = "refresh"
	}
	for {
		c.mu.Lock()
		e, ok := c.entries[name]
		if !ok {
			c.mu.Unlock()
			return nil, unknownProfile(name)
		}
		now := c.clock.Now()
		if !forced && e.serves(now) {
			t := servable(e.tok)
			c.mu.Unlock()
			return t, nil
		}
		cl := e.inflight
		if cl == nil {
			if err := c.checkFetchLocked(e, now, forced); err != nil {
				c.mu.Unlock()
				return nil, err
			}
			cl = c.startFetchLocked(e, trigger)
		}
		c.mu.Unlock()

		if err := c.wait(ctx, name, cl); err != nil {
			return nil, err
		}
		switch {
		case cl.err == nil:
			t := *cl.tok
			return &t, nil
		case errors.Is(cl.err, errDiscarded):
			continue
		case errors.Is(cl.err, ErrClosed):
			return nil, cl.err
		case forced:
			return nil, fmt.Errorf("profile %s: refresh failed: %w", name, cl.err)
		}
		return nil, &RefreshError{Profile: name, Err: cl.err, At: cl.failedAt, RetryAt: cl.retryAt}
	}
}

// wait waits for cl to be done and returns nil, or returns ctx's error if
// ctx ends first.
func (c *Cache) wait(ctx context.Context, name string, cl *call) error {
	if c.hooks.waiting != nil {
		c.hooks.waiting(name)
	}
	select {
	case <-cl.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Forget drops the profile's token and refresh token, from memory and from
// the store. A running cache then fetches a new one (subject to the backoff
// of earlier failures, which Forget keeps); otherwise the next Get does.
func (c *Cache) Forget(name string) error {
	_, err := c.forget(name, func(*entry) bool { return true })
	return err
}

// ForgetRefused drops the profile's token as Forget does, but only when
// its access token is refused, the secret a server refused; it reports
// whether it did. A refused secret that is not the token held now (one
// already replaced, or another helper's password, since git reports a
// refusal to every helper) changes nothing. The comparison and the drop
// are one step, so a token fetched meanwhile is never dropped for its
// predecessor's refusal. An empty refused is never the token.
func (c *Cache) ForgetRefused(name, refused string) (bool, error) {
	return c.forget(name, func(e *entry) bool {
		return refused != "" && e.tok != nil &&
			subtle.ConstantTimeCompare([]byte(e.tok.AccessToken), []byte(refused)) == 1
	})
}

// forget drops the profile's token when match, called with mu held,
// says so, and reports whether it did.
func (c *Cache) forget(name string, match func(*entry) bool) (bool, error) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()

	c.mu.Lock()
	e, ok := c.entries[name]
	if !ok {
		c.mu.Unlock()
		return false, unknownProfile(name)
	}
	if !match(e) {
		c.mu.Unlock()
		return false, nil
	}
	c.dropTokenLocked(e)
	c.scheduleLocked(e, c.clock.Now())
	c.mu.Unlock()
	c.log.Info("token cache: token forgotten", "profile", name)

	if c.store == nil {
		return true, nil
	}
	if err := c.store.Delete(name); err != nil {
		return true, fmt.Errorf("profile %s: forget: %w", name, err)
	}
	return true, nil
}

// Import makes tok the profile's token, for profiles whose tokens come from
// elsewhere (the console's token file). tok must be one Get serves now:
// valid, and not within its serving margin. A fetch in
// flight is discarded; the backoff of earlier failures is reset, except a
// server's Retry-After. The token is persisted like a fetched one.
func (c *Cache) Import(name string, tok *token.Token) error {
	c.mu.Lock()
	e, ok := c.entries[name]
	if !ok {
		c.mu.Unlock()
		return unknownProfile(name)
	}
	now := c.clock.Now()
	if tok == nil || tok.AccessToken == "" {
		c.mu.Unlock()
		return fmt.Errorf("profile %s: import: no access token", name)
	}
	if !tok.Valid(now) {
		c.mu.Unlock()
		return fmt.Errorf("profile %s: import: the token expired at %s", name, tok.Expiry.UTC().Format(time.RFC3339))
	}
	if !now.Before(c.policy.serveUntil(tok, now)) {
		c.mu.Unlock()
		return fmt.Errorf("profile %s: import: the token expires at %s, too soon to serve", name, tok.Expiry.UTC().Format(time.RFC3339))
	}
	c.dropTokenLocked(e)
	t := c.installLocked(e, tok, now, false)
	c.scheduleLocked(e, now)
	c.mu.Unlock()
	c.log.Info("token cache: token imported", "profile", name, "expires", t.Expiry, "has_refresh_token", t.RefreshToken != "")
	c.persist(e, t)
	return nil
}

// Status describes every profile, ordered by name.
func (c *Cache) Status() []ProfileStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]ProfileStatus, 0, len(c.entries))
	for _, e := range c.entries {
		s := ProfileStatus{
			Name:            e.profile.Name,
			LastRefresh:     e.lastRefresh,
			Failures:        e.failures,
			HasRefreshToken: e.refreshToken != "",
			StoreError:      e.storeErr,
		}
		if e.tok != nil {
			s.ExpiresAt = e.tok.Expiry
		}
		if e.lastErr != nil {
			s.LastError = e.lastErr.Error()
			s.LastErrorAt = e.lastErrAt
		}
		if e.inflight == nil {
			if at, ok := c.nextAttemptLocked(e, now); ok {
				s.NextRefresh = latest(at, now)
			}
		}
		switch {
		case e.inflight != nil:
			s.State = StateRefreshing
		case e.serves(now):
			s.State = StateValid
		case e.failures > 0:
			s.State = StateFailing
		case e.tok != nil:
			s.State = StateExpired
		default:
			s.State = StateEmpty
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ProfileStatus) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Run fetches a token for every profile that can fetch one and has none,
// then keeps every token warm until ctx ends. It then stops the timers,
// cancels the fetches in flight, waits for them and returns nil. A cache
// runs once; Get, Refresh and Import work before Run too.
func (c *Cache) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running || c.closed {
		c.mu.Unlock()
		return errors.New("token cache: Run called twice")
	}
	c.running = true
	now := c.clock.Now()
	for _, name := range c.namesLocked() {
		c.jitterStartLocked(c.entries[name], now)
	}
	c.scheduleAllLocked()
	close(c.started)
	c.mu.Unlock()

	<-ctx.Done()

	c.mu.Lock()
	c.running = false
	c.closed = true
	for _, e := range c.entries {
		c.stopTimerLocked(e)
	}
	c.cancelBase()
	c.mu.Unlock()
	c.fetches.Wait()
	return nil
}

// Started returns a channel that is closed once Run has planned every
// profile's first fetch (with its start jitter): from then on Status
// reports the plan that Run follows. A daemon waits for it before it
// declares itself ready.
func (c *Cache) Started() <-chan struct{} {
	return c.started
}

// serves reports whether e holds a token it serves at now: the one rule
// that Get, Held, Status and the scheduler judge a token by.
func (e *entry) serves(now time.Time) bool {
	return e.tok != nil && now.Before(e.serveUntil)
}

// servable returns the copy of t handed to callers: without the refresh
// token, which never leaves the cache except to the Store and the Fetcher.
func servable(t *token.Token) *token.Token {
	s := *t
	s.RefreshToken = ""
	return &s
}

// fetchable reports whether e's Fetcher can be called now.
func (e *entry) fetchable() bool {
	return e.profile.Fetcher != nil && (e.profile.CanFetch || e.refreshToken != "")
}

// checkFetchLocked returns why a fetch for e must not start now, or nil.
// forced (Refresh) ignores the cache's own backoff but not the server's
// Retry-After, which nothing ignores.
func (c *Cache) checkFetchLocked(e *entry, now time.Time, forced bool) error {
	name := e.profile.Name
	switch {
	case c.closed:
		return fmt.Errorf("profile %s: %w", name, ErrClosed)
	case !e.fetchable() && e.serves(now):
		// Only Refresh gets here: Get serves the token.
		return fmt.Errorf("profile %s: %w: the imported token, served until %s, cannot be refreshed without a refresh token: import a new token file with `tokctl import %s FILE`",
			name, ErrNoToken, e.serveUntil.UTC().Format(time.RFC3339), name)
	case !e.fetchable() && e.tok != nil:
		return fmt.Errorf("profile %s: %w: the token expired at %s and the profile cannot fetch one: import a new token file with `tokctl import %s FILE`",
			name, ErrNoToken, e.tok.Expiry.UTC().Format(time.RFC3339), name)
	case !e.fetchable():
		return fmt.Errorf("profile %s: %w: nothing imported yet: import a token file with `tokctl import %s FILE`", name, ErrNoToken, name)
	case !forced && now.Before(e.notBefore) && e.lastErr != nil:
		return &RefreshError{Profile: name, Err: e.lastErr, At: e.lastErrAt, RetryAt: e.notBefore}
	case now.Before(e.retryAfterUntil):
		// Refresh, or a Get after an Import reset the backoff but not
		// the server's Retry-After.
		what := "refresh not attempted"
		if !forced {
			what = "no valid token, and no token request"
		}
		err := fmt.Errorf("profile %s: %s: the token endpoint asked to wait until %s",
			name, what, e.retryAfterUntil.UTC().Format(time.RFC3339))
		if e.lastErr != nil {
			err = fmt.Errorf("%w: %w", err, e.lastErr)
		}
		return err
	}
	return nil
}

// startFetchLocked starts a fetch for e and records it as in flight.
func (c *Cache) startFetchLocked(e *entry, trigger string) *call {
	ctx, cancel := context.WithTimeout(c.baseCtx, c.fetchTimeout)
	cl := &call{gen: e.gen, cancel: cancel, done: make(chan struct{})}
	e.inflight = cl
	c.stopTimerLocked(e)
	if e.failures > 0 && trigger == "scheduled" {
		trigger = "retry"
	}
	if c.hooks.fetchStarted != nil {
		c.hooks.fetchStarted(e.profile.Name)
	}
	c.fetches.Add(1)
	go c.fetch(ctx, e, cl, e.profile.Name, trigger, e.profile.Fetcher, e.refreshToken)
	return cl
}

// fetch runs one Fetch and applies its result to e, unless e was removed,
// reloaded or forgotten meanwhile.
func (c *Cache) fetch(ctx context.Context, e *entry, cl *call, name, trigger string, f Fetcher, refreshToken string) {
	defer c.fetches.Done()
	defer cl.cancel()
	if c.hooks.fetchDone != nil {
		defer c.hooks.fetchDone(name)
	}
	start := c.clock.Now()
	tok, err := f.Fetch(ctx, refreshToken)
	now := c.clock.Now()
	// refused is a token the server issued but that arrived too late to
	// serve; its refresh token, which may be the only one that still
	// works, is kept for the next attempt.
	var refused *token.Token
	if err == nil {
		refused = tok
		switch {
		case tok == nil || tok.AccessToken == "":
			err = errors.New("the fetcher returned no access token")
		case !now.Round(0).Before(tok.Expiry.Round(0)):
			err = fmt.Errorf("the fetcher returned a token that expired at %s", tok.Expiry.UTC().Format(time.RFC3339))
		case !now.Before(c.policy.serveUntil(tok, now)):
			// Get would not serve it: its waiters must not get it either,
			// and a failure's backoff keeps the next Gets from asking
			// again at once.
			err = fmt.Errorf("the fetcher returned a token that expires at %s, too soon to serve", tok.Expiry.UTC().Format(time.RFC3339))
		default:
			refused = nil
		}
	}

	c.mu.Lock()
	current := c.entries[name] == e && e.gen == cl.gen
	var installed *token.Token
	switch {
	case !current:
		cl.err = errDiscarded
	case err != nil && c.baseCtx.Err() != nil:
		e.inflight = nil
		cl.err = fmt.Errorf("profile %s: %w", name, ErrClosed)
	case err != nil:
		e.inflight = nil
		e.failures++
		e.lastErr, e.lastErrAt = err, now
		e.startAt = time.Time{}
		if refused != nil && refused.RefreshToken != "" {
			e.refreshToken = refused.RefreshToken
		}
		var served time.Duration
		if e.serves(now) {
			served = e.serveUntil.Sub(now)
		}
		d := c.policy.retryDelay(e.failures, err, c.rand(), served)
		e.notBefore = now.Add(d)
		if ra := retryAfter(err); ra > 0 {
			e.retryAfterUntil = now.Add(ra)
		}
		cl.err, cl.failedAt, cl.retryAt = err, now, e.notBefore
	default:
		e.inflight = nil
		installed = c.installLocked(e, tok, now, true)
		cl.tok = servable(installed)
	}
	var next time.Time
	if current {
		next = c.scheduleLocked(e, now)
	}
	failures := e.failures
	c.mu.Unlock()

	result := FetchResult{Profile: name, Trigger: trigger, Duration: now.Sub(start), Err: err}
	level := slog.LevelInfo
	switch {
	case !current:
		result.Outcome, result.Err = "discarded", nil
	case errors.Is(cl.err, ErrClosed):
		result.Outcome = "cancelled"
	case err != nil && retryable(err):
		result.Outcome, level = "retryable_error", slog.LevelWarn
	case err != nil:
		result.Outcome, level = "permanent_error", slog.LevelError
	default:
		result.Outcome = "ok"
	}
	if c.observe != nil {
		c.observe(result)
	}
	attrs := []slog.Attr{
		slog.String("profile", name),
		slog.String("trigger", trigger),
		slog.Duration("duration", result.Duration),
		slog.String("outcome", result.Outcome),
	}
	switch result.Outcome {
	case "retryable_error", "permanent_error":
		attrs = append(attrs, slog.Int("failures", failures),
			slog.Time("next_refresh", next), slog.String("err", err.Error()))
	case "ok":
		attrs = append(attrs, slog.Time("expires", installed.Expiry),
			slog.Time("next_refresh", next), slog.Bool("has_refresh_token", installed.RefreshToken != ""))
	}
	c.log.LogAttrs(context.Background(), level, "token refresh", attrs...)
	// The callers waiting on this fetch get the token once it is saved:
	// a refresh token the server just rotated must survive a crash.
	if result.Outcome == "ok" {
		c.persist(e, installed)
	}
	close(cl.done)
}

// installLocked makes a copy of t e's token and returns the copy. fetched
// says whether this process just fetched it. It resets the failure state.
func (c *Cache) installLocked(e *entry, t *token.Token, now time.Time, fetched bool) *token.Token {
	cp := *t
	t = &cp
	// Expiry is a wall time, judged as the resource server judges it.
	// Drop any monotonic clock reading (time.Now's): Go's monotonic
	// clock stops while the machine is suspended, and comparisons
	// between readings would serve a token after a suspend longer than
	// its remaining life.
	t.Expiry, t.IssuedAt = t.Expiry.Round(0), t.IssuedAt.Round(0)
	issued := issuedAt(t, now.Round(0))
	if t.IssuedAt.IsZero() {
		t.IssuedAt = issued
	}
	e.tok = t
	e.refreshToken = t.RefreshToken
	e.serveUntil = c.policy.serveUntil(t, issued)
	e.refreshAt = c.policy.refreshTime(issued, t.Expiry, c.rand())
	if fetched {
		e.lastRefresh = now
		e.refreshAt = latest(e.refreshAt, now.Add(c.policy.minRefreshInterval))
		e.retryAfterUntil = time.Time{}
	}
	e.failures, e.lastErr, e.lastErrAt, e.notBefore = 0, nil, time.Time{}, time.Time{}
	e.startAt = time.Time{}
	e.storeErr = ""
	return t
}

// jitterStartLocked draws e's start jitter when the cache is running with
// a StartJitter and e can fetch but holds no token it serves: its first
// scheduled fetch then waits until a uniform random moment in
// [now, now+StartJitter). A served token whose refresh is already due
// waits likewise, within min(StartJitter, half its remaining servable
// life). It draws nothing otherwise, so that a cache without a
// StartJitter uses Options.Rand as before.
func (c *Cache) jitterStartLocked(e *entry, now time.Time) {
	e.startAt = time.Time{}
	if c.startJitter <= 0 || !c.running || !e.fetchable() {
		return
	}
	window := c.startJitter
	if e.serves(now) {
		// A servable token whose refresh is already due (a fleet stopped
		// past its refresh times and restarted together) is refreshed
		// within the jitter too, but in the first half of the life it
		// has left to serve.
		if e.refreshAt.After(now) {
			return
		}
		window = min(window, e.serveUntil.Sub(now)/2)
	}
	e.startAt = now.Add(time.Duration(c.rand() * float64(window)))
}

// dropTokenLocked forgets e's token and refresh token and discards a fetch
// in flight; its waiters look at the profile again.
func (c *Cache) dropTokenLocked(e *entry) {
	e.gen++
	if e.inflight != nil {
		e.inflight.cancel()
		e.inflight = nil
	}
	c.stopTimerLocked(e)
	e.tok, e.refreshToken = nil, ""
	e.serveUntil, e.refreshAt = time.Time{}, time.Time{}
	e.storeErr = ""
}

// persist writes t, e's token, to the store, unless e no longer holds t.
// The persists of different profiles run concurrently (see storeMu and
// entry.persistMu for what orders them).
func (c *Cache) persist(e *entry, t *token.Token) {
	if c.store == nil {
		return
	}
	c.storeMu.RLock()
	defer c.storeMu.RUnlock()
	e.persistMu.Lock()
	defer e.persistMu.Unlock()
	c.mu.Lock()
	if c.entries[e.profile.Name] != e || e.tok != t {
		c.mu.Unlock()
		return
	}
	rec := Record{
		Profile:      e.profile.Name,
		TokenType:    t.TokenType,
		AccessToken:  t.AccessToken,
		RefreshToken: t.RefreshToken,
		Scope:        t.Scope,
		IssuedAt:     t.IssuedAt,
		Expiry:       t.Expiry,
		Fingerprint:  e.profile.Fingerprint,
	}
	c.mu.Unlock()

	err := c.store.Put(rec)

	c.mu.Lock()
	if e.tok == t {
		e.storeErr = ""
		if err != nil {
			e.storeErr = err.Error()
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Error("token cache: saving the token failed; serving it from memory", "profile", rec.Profile, "err", err)
	}
}

// nextAttemptLocked returns when the scheduler should next fetch for e,
// and false when it should not: the profile cannot fetch.
func (c *Cache) nextAttemptLocked(e *entry, now time.Time) (time.Time, bool) {
	if !e.fetchable() {
		return time.Time{}, false
	}
	var at time.Time
	switch {
	case e.failures > 0:
		at = e.notBefore
	case e.tok != nil:
		at = e.refreshAt
	default:
		at = now
	}
	return latest(at, e.notBefore, e.retryAfterUntil, e.startAt), true
}

// scheduleLocked arms e's timer for its next attempt, or starts the fetch
// when it is due, if the cache is running. It returns the time of the next
// attempt (zero when none).
func (c *Cache) scheduleLocked(e *entry, now time.Time) time.Time {
	if e.inflight != nil {
		return time.Time{}
	}
	at, ok := c.nextAttemptLocked(e, now)
	if !ok || !c.running {
		c.stopTimerLocked(e)
		if !ok {
			return time.Time{}
		}
		return at
	}
	if !at.After(now) {
		c.startFetchLocked(e, "scheduled")
		return now
	}
	if e.timer != nil && e.timerAt.Equal(at) {
		return at
	}
	c.stopTimerLocked(e)
	e.timerSeq++
	seq := e.timerSeq
	e.timer = c.clock.AfterFunc(at.Sub(now), func() { c.onTimer(e, seq) })
	e.timerAt = at
	return at
}

// scheduleAllLocked schedules every profile, in name order.
func (c *Cache) scheduleAllLocked() {
	now := c.clock.Now()
	for _, name := range c.namesLocked() {
		c.scheduleLocked(c.entries[name], now)
	}
}

// namesLocked returns the profile names, sorted.
func (c *Cache) namesLocked() []string {
	names := make([]string, 0, len(c.entries))
	for name := range c.entries {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// onTimer runs when the timer seq of e fires.
func (c *Cache) onTimer(e *entry, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.profile.Name] != e || e.timerSeq != seq || e.timer == nil {
		return
	}
	now := c.clock.Now()
	if back := e.timerAt.Sub(now); back > 0 {
		// The timer waited its whole duration, yet the clock reads
		// earlier than the time it was armed for: the clock stepped back
		// by back. The backoff, the Retry-After and the start jitter are
		// durations, and they have passed: move them back with the clock.
		// The refresh time stays, a wall time derived from the token's
		// expiry, and the timer is armed anew for it.
		for _, at := range []*time.Time{&e.notBefore, &e.retryAfterUntil, &e.startAt} {
			if !at.IsZero() {
				*at = at.Add(-back)
			}
		}
	}
	e.timer, e.timerAt = nil, time.Time{}
	c.scheduleLocked(e, now)
}

func (c *Cache) stopTimerLocked(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer, e.timerAt = nil, time.Time{}
	}
}
