// Package cache holds tokd's tokens, one per profile, in memory, and keeps
// them fresh: it fetches a token for every profile at start, refreshes it
// before it expires, backs off when the token endpoint fails, persists
// every new token through a Store and never hands out an expired token.
//
// It knows tokens (token.Token) and classifies errors (token.RetryError,
// which *oauth.Error implements) but makes no requests itself: each
// profile's Fetcher does. It never links net/http (cmd/deps_test.go) and
// never logs or reports token material: the
// refresh token does not even leave it, except to the Fetcher and the Store.
//
// # API
//
//	c := cache.New(cache.Options{Clock: ..., Store: ..., Logger: ...})
//	c.SetProfiles(profiles) // at start and on every reload (SIGHUP)
//	c.Restore(records)      // at start: valid matching records are served without a token request
//	go c.Run(ctx)           // fetch what is missing, keep everything warm until ctx ends
//	tok, err := c.Get(ctx, "ci")
//	c.Refresh(ctx, "ci"); c.Forget("ci"); c.Import("ci", tok); c.Status()
//
// Get serves the held token when it is valid. Otherwise it waits for the one
// fetch in flight for that profile, or starts it: any number of concurrent
// Gets cause one Fetch, and each waits only as long as its own context
// allows. Errors: ErrUnknownProfile, ErrNoToken (an import-only profile
// with nothing valid to serve), *RefreshError (the last attempt failed; it
// carries that error and its time) and ErrClosed (after Run returned).
//
// Record mirrors store.Record field for field, so that the daemon converts
// with a type conversion and the cache stays testable without bbolt.
//
// # Refresh timing
//
// For a token of lifetime L = Expiry - IssuedAt the scheduler refreshes at
//
//	IssuedAt + 2/3·L + J       J = (2r-1)·L/10, r uniform in [0, 1), drawn once per token from Options.Rand
//	but when that is later than Latest = Expiry - max(MinMargin, L/10), the margin capped at L/2   (MinMargin 30s),
//	    at Latest - r·L/10 instead
//	and no sooner than MinRefreshInterval after this profile's last successful fetch   (10s)
//
// Examples: L = 1h refreshes between 34 and 46 minutes (the 6-minute margin
// never binds); L = 100s between 57s and 70s; L = 60s between 24s and 30s,
// about 133 refreshes an hour; L = 5s every 10s, 360 an hour, the token
// lapsing for half of each period. Below the margin the draw still spreads
// the refreshes over L/10: without it, short tokens issued together (a
// start, a recovery) would all refresh at their margin, again together,
// cycle after cycle (1,000 profiles of 60s tokens: the busiest second fell
// from 587-659 refreshes to 184, docs/BENCHMARKS.md). A token is served
// until min(ExpirySkew, L/10) before its expiry (ExpirySkew 10s), to allow
// for clock skew with the resource server; that is never later than the
// refresh margin, so a healthy refresh always lands while the token is
// served.
//
// Only the scheduler obeys MinRefreshInterval. A Get that finds no valid
// token fetches at once, so fetches on demand are bounded by one per token
// lifetime (at least 1 s, see package oauth), not by the interval.
//
// # Failures
//
// A failed attempt is retried by the scheduler after
//
//	retryable (RetryError.Temporary, and any error that is not a token.RetryError):
//	    full jitter: uniform in [0, min(MaxBackoff, BaseBackoff·2^(n-1))), at least 250ms,
//	    n the number of consecutive failures (BaseBackoff 1s, MaxBackoff 5min)
//	permanent (invalid_grant, invalid_client, invalid_scope, ...):
//	    PermanentRetry plus up to a tenth of it: 15 to 16.5 minutes
//
// and never before the server's Retry-After. Each attempt logs one line;
// Status shows the last error at once. While attempts fail the held token
// is served until it expires (less the skew above); after that Get returns
// a *RefreshError at once while the backoff lasts, and otherwise makes one
// attempt itself, shared by every concurrent caller. So callers never
// drive the token endpoint faster than the backoff does. Refresh (tokctl
// refresh) overrides the backoff but not a Retry-After. Falling back from a
// rejected refresh token to a new assertion is the Fetcher's job.
//
// # Profiles and persistence
//
// A token belongs to the profile settings that produced it, named by
// Profile.Fingerprint: on reload, a profile with the same fingerprint keeps
// its token, a changed one loses it and fetches anew, a removed one loses its
// stored record. A fetch that was in flight when its profile changed, was
// forgotten or received an imported token is discarded; its waiters look
// again. Every token fetched or imported is written with Store.Put, with
// absolute IssuedAt and Expiry and the fingerprint; a Store error is logged,
// shown in Status, and the token is served from memory all the same.
//
// # Time
//
// All times come from Options.Clock, so tests drive the scheduler with
// clocktest.Clock and never sleep. Options.FetchTimeout (1 min) bounds each
// Fetch in real time.
package cache
