// Package fleet simulates a fleet of tokd hosts sharing one identity
// domain, deterministically and in simulated time, to check that the
// cache's refresh scheduling and backoff keep a fleet within the domain's
// published rate limits (docs/FLEET.md has the figures).
//
// Every host is a real cache.Cache with one profile, driven by one shared
// fake clock (cache/clocktest) and its own seeded jitter source; the
// profile's Fetcher asks a simulated token endpoint that enforces the
// domain's per-second and per-minute limits with the emulator's sliding
// windows, answers 429 as an *oauth.Error (with or without Retry-After),
// 503 during an outage, and otherwise issues a token. The endpoint is
// instantaneous in simulated time.
//
// # How time moves
//
// Run moves the clock only when every host is quiescent: no fetch in
// flight, every host's next attempt armed as a timer. It jumps to the
// earliest timer (clocktest's NextDeadline) and runs the timers due then.
// The cache arms timers through a per-host view of the clock, so Run
// knows, when a host's timer callback returns, whether it armed the next
// timer or started a fetch (a running host whose profile can fetch always
// does one or the other). It then waits, on a condition variable, for
// exactly that many Fetch calls; answers them in host order, so that the
// outcome does not depend on goroutine scheduling; and waits for the same
// number of Options.Observe calls, which the cache makes after it has
// applied the result and armed the next timer. An unexpected Fetch, a
// host left without a timer, or a wait that does not end within a minute
// of real time fails the run rather than hanging or racing.
//
// # What is checked
//
// After every step Run calls Get on the hosts whose held token is still
// served (now < Expiry - min(ExpirySkew, L/10), the cache's own serving
// window): Get must return that very token from memory, without a fetch.
// It checks the hosts that fetched in the step every time and all hosts
// every Config.SweepEvery of simulated time (every step when zero); a
// host's answer can change only when it fetches, so the partial checks
// lose nothing.
package fleet

import (
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/emulator"
)

// Start is the simulated time at which every run starts.
var Start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Config describes one simulated run.
type Config struct {
	// Name labels the run in tables.
	Name string
	// Hosts is the number of hosts, each a tokd with one profile.
	Hosts int
	// Limit is the domain's rate limit (emulator.DomainRateLimit);
	// Limit.RetryAfter makes its 429s carry a Retry-After.
	Limit emulator.RateLimit
	// Lifetime of the tokens the endpoint issues. Zero: one hour.
	Lifetime time.Duration
	// Seed makes the run reproducible: the same Config gives the same
	// Result, wall time aside.
	Seed uint64

	// Warm starts every host with a stored token (cache.Restore), of an age
	// drawn uniformly from [0, 17/30·Lifetime), the earliest refresh point,
	// as in a fleet that has run for a while; otherwise every cache starts
	// empty.
	Warm bool
	// StartJitter is every host's cache.Options.StartJitter: with empty
	// caches each host's first fetch comes at a uniform random time in
	// [0, StartJitter) after its start. StartJitterFor sizes it.
	StartJitter time.Duration
	// StartSpread starts each host's cache (Run) at a uniform random time in
	// [0, StartSpread) instead of all at once, as hosts booted over a while
	// would.
	StartSpread time.Duration

	// OutageAt and OutageFor place an outage of the identity domain: every
	// request in [OutageAt, OutageAt+OutageFor) fails with 503, retryable.
	// OutageFor zero: no outage.
	OutageAt, OutageFor time.Duration
	// OutageRetryAfter is the Retry-After of those 503s; zero: none.
	OutageRetryAfter time.Duration

	// Horizon is how much simulated time the run covers. Zero: until every
	// host holds a token and the outage is over, plus one token lifetime.
	Horizon time.Duration
	// SweepEvery is how often, in simulated time, the invariant check
	// covers every host; zero: after every step.
	SweepEvery time.Duration

	// Tune, when set, adjusts each host's cache options (backoff and
	// margins); Clock, Rand and Observe are the simulation's.
	Tune func(host int, o *cache.Options)
}

// StartJitterFactor sizes a fleet's start jitter: StartJitterFor.
const StartJitterFactor = 1.3

// StartJitterFor returns the start jitter (cache.Options.StartJitter) that
// spreads the first fetches of hosts x profiles empty caches over
// StartJitterFactor times the floor that the per-minute limit sets.
func StartJitterFor(hostProfiles, perMinute int) time.Duration {
	if perMinute <= 0 {
		return 0
	}
	return time.Duration(StartJitterFactor * float64(hostProfiles) / float64(perMinute) * float64(time.Minute))
}

// Floor is the shortest time in which the domain's per-minute limit lets
// every host obtain its first token: Hosts / Limit.PerMinute minutes.
func (c Config) Floor() time.Duration {
	if c.Limit.PerMinute <= 0 {
		return 0
	}
	return time.Duration(float64(c.Hosts) / float64(c.Limit.PerMinute) * float64(time.Minute))
}

// Phase summarises the token requests of one stretch of a run.
type Phase struct {
	Name     string
	From, To time.Duration // since the start of the run
	// Requests is the number of requests that reached the endpoint, split
	// into Issued (a token), Refused (429) and Unavailable (503).
	Requests, Issued, Refused, Unavailable int
	// PeakPerSecond and PeakPerMinute are the most requests (of any
	// outcome) in any sliding one-second and one-minute window within the
	// phase.
	PeakPerSecond, PeakPerMinute int
}

// RefusedShare returns the share of the phase's requests refused with 429.
func (p Phase) RefusedShare() float64 {
	if p.Requests == 0 {
		return 0
	}
	return float64(p.Refused) / float64(p.Requests)
}

// PerMinute returns the mean number of requests per minute in the phase.
func (p Phase) PerMinute() float64 {
	if p.To <= p.From {
		return 0
	}
	return float64(p.Requests) / (p.To - p.From).Minutes()
}

// Result is what one run measured.
type Result struct {
	Config Config
	// Total covers the whole run. Phases split it: for a cold start
	// "start" (until every host holds a token) and "steady"; for an outage
	// "before", "outage" and "after".
	Total  Phase
	Phases []Phase
	// Converged is when every host first held a valid token, since the
	// start; -1 if that never happened.
	Converged time.Duration
	// Recovered is, for an outage, how long after its end the last host
	// whose attempts had failed obtained a token; -1 if some never did.
	Recovered time.Duration
	// Lapsed counts the hosts whose served token ran out before a new one
	// arrived (legitimate only once the old token's lifetime is over);
	// LapsedFor is the longest such gap and LapsedHostMinutes their sum.
	Lapsed            int
	LapsedFor         time.Duration
	LapsedHostMinutes float64
	// LapsedAfterOutage counts the lapses that began after the outage had
	// ended: tokens that ran out while the domain was up again, which a
	// prompt recovery would have replaced.
	LapsedAfterOutage int
	// Checks counts the Gets of the invariant check; Violations those that
	// did not return the held token from memory, and any other broken
	// invariant. Problems describes the first few.
	Checks     int
	Violations int
	Problems   []string
	// Steps counts the instants at which timers fired.
	Steps int
	// Wall is the real time the run took.
	Wall time.Duration

	log []record // every request, in order
}

// Between summarises the requests in [from, to] since the start.
func (r *Result) Between(name string, from, to time.Duration) Phase {
	return phase(r.log, name, from, to, true)
}

// Phase returns the phase named name, or a zero Phase.
func (r *Result) Phase(name string) Phase {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return Phase{}
}
