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
// served. A fetched token that arrives past that point (a slow answer, a
// clock step during the request) is a failed attempt: no caller gets it,
// and the backoff below spaces the next attempts.
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
//	    full jitter: uniform in [0, min(MaxBackoff, B·2^(n-1))), at least 250ms,
//	    n the number of consecutive failures, MaxBackoff 5min, and B
//	    RateLimitBackoff (1min) for a rate-limit answer (RateLimitError: HTTP 429),
//	    BaseBackoff (1s) for any other;
//	    but while the held token is served, no later than half of the time left
//	    until it stops being served (at least 1s; 95% of it with a StartJitter)
//	permanent (invalid_grant, invalid_client, invalid_scope, ...):
//	    PermanentRetry plus up to a tenth of it: 15 to 16.5 minutes
//
// and never before the server's Retry-After.
//
// Both retryable rules come from the fleet simulation (docs/FLEET.md). A
// 429 says the domain's window is full, and identity domains count per
// minute: retrying within a second only adds refusals to that window,
// whereas retrying somewhere in the next minute spreads the refused hosts
// over the next window. At 80% of a Free domain's steady-state capacity,
// 2.6% of requests were refused with the one-minute base against 10.2%
// with 1s, and at 90% 9% against 38%. A Retry-After, when given, stays a
// floor, not the whole wait: hosts refused together get about the same
// Retry-After and would return together (10.1% refused at 80% load when
// the 429s carry one and the base is 1s). The price is paid by a host
// refused late in a cold start, which may wait up to a minute more.
// The cap keeps a host from sleeping through the domain's return while its
// old token runs out: if the domain answers again at least 2s before the
// held token stops being served, some retry lands in between, whatever
// the draws. After a simulated 30-minute outage it cut the tokens that
// lapsed after the domain was back from 104 to 7 of 1,000 hosts (Free) and
// from 502 to 7 of 10,000 (Premium), at the cost of about a fifth more
// requests to the down domain. Permanent errors are not capped: retrying
// them sooner cures nothing.
//
// With a StartJitter (a fleet), the retry ceiling is C = max(StartJitter,
// RateLimitBackoff) instead of MaxBackoff, and the start jitter's window
// also spreads the retries during and after an outage. Once the doubling
// reaches RateLimitBackoff (failures for a minute: an outage, not a
// blip), a delay is drawn at the ceiling with equal jitter, uniform in
// [3C/4, C), so that when the domain returns the failing hosts come back
// spread over about one window. A 429 (the domain is up, its window
// full) is drawn uniform in [0, min(C/2, max(RateLimitBackoff, S/4))),
// S the held token's remaining servable life, whatever failures came
// before it: a host with no token or little left tries the next minute, a
// host with time to spare leaves the window to those that need it, but
// comes back within half a window, so that it is served within about
// 1.5 windows. The cap by the served life becomes 95% of S instead of
// half: with S/2, every host whose token neared its end during the
// outage retried at S/2, S/4, ... and those hosts all came back in the
// first minutes after it, 136-148 first requests in the first minute
// against Free's 150 (docs/FLEET.md §5 has the classes); with 95%, each
// makes one last attempt shortly before its token ends, spread by the
// tokens' own ages. After a 30-minute outage (seeds 1-5, refused counted
// until recovery) the simulation recovered within 1.27-1.30x the floor
// with 0.0-3.4% refused (Free, 1,000 hosts; 17-19% with S/2 and the full
// window, 49-53% before either rule) and 1.28-1.30x with 0.3-0.4%
// (Premium, 10,000), with at most 1 of 1,000 and 4 of 10,000 tokens
// lapsing after the domain was back, and about a sixth fewer requests to
// the down domain; the cold starts are unchanged (docs/FLEET.md §3, §5).
// Without a StartJitter the rules are as above.
//
// Each attempt logs one line;
// Status shows the last error at once. While attempts fail the held token
// is served until it expires (less the skew above); after that Get returns
// a *RefreshError at once while the backoff lasts, and otherwise makes one
// attempt itself, shared by every concurrent caller. So callers never
// drive the token endpoint faster than the backoff does. Refresh (tokctl
// refresh) overrides the backoff but not a Retry-After, which holds for
// Get too after an Import has reset the backoff. Falling back from a
// rejected refresh token to a new assertion is the Fetcher's job.
//
// # Start jitter
//
// A profile with no token to serve is fetched at once by Run, and by
// SetProfiles when it adds the profile or changes its fingerprint. A fleet
// restarted at once (an image roll-out, a wiped state, a config reload
// everywhere) then sends all its requests in the same instant, and the
// domain refuses all but its per-second limit: 88% of requests in the
// simulation. Options.StartJitter spreads those first fetches uniformly
// over [0, StartJitter), drawn from Options.Rand when the cache starts
// running, or when the profile is added or changed while it runs. It
// delays only the scheduler: Get and Refresh fetch at once, as callers
// must not wait for a jitter, and a profile restored with a servable
// token is scheduled by that token as without a jitter, unless its
// refresh is already due (a fleet stopped past its refresh times and
// restarted together): that refresh is drawn uniformly within
// min(StartJitter, half the token's remaining servable life). An expired
// stored record that lends its refresh token is jittered like an empty
// profile.
// Zero, the default, fetches at once: right for one host, since the jitter
// depends on the fleet. For a fleet of H hosts with P profiles each on one
// identity domain whose limit is M requests per minute,
//
//	StartJitter = 1.3 × H × P / M minutes
//
// brings every host its token within 1.3 times the floor H×P/M, with under
// 0.1% of requests refused, in the simulation of 1,000 hosts on a Free
// domain and 10,000 on a Premium one (docs/FLEET.md). Below about 1.2 the
// bursts of the random draws overflow the per-minute window; above 1.5
// the start is needlessly slow.
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
// shown in Status, and the token is served from memory all the same. The
// Puts of different profiles run concurrently, so that a burst of refreshes
// reaches the store together and store.Put commits it in few transactions;
// those of one profile run one at a time, each only if its token is still
// the profile's, so an older token never overwrites a newer one; and a
// Delete by Forget or SetProfiles waits for the Puts in progress, so a
// fetch that finished meanwhile never writes a deleted record back.
//
// # Time
//
// All times come from Options.Clock, so tests drive the scheduler with
// clocktest.Clock and never sleep. A token's expiry and refresh time are
// wall times; the backoff, a Retry-After and the start jitter are
// durations, run out by the timers, so a clock stepped back during one
// does not lengthen it. Options.FetchTimeout (1 min) bounds each
// Fetch in real time.
package cache
