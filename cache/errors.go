package cache

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnknownProfile means the profile is not configured.
var ErrUnknownProfile = errors.New("unknown profile")

// ErrNoToken means the profile holds no valid token and has no way to fetch
// one: an import-only profile with nothing imported, or whose imported
// token expired and came without a refresh token.
var ErrNoToken = errors.New("no valid token")

// ErrClosed means Run has returned: the cache still serves the valid tokens
// it holds but starts no more fetches.
var ErrClosed = errors.New("token cache stopped")

// RefreshError reports that a profile has no valid token because the last
// attempt to obtain one failed. Get returns it without a token request while
// the failure's backoff lasts, so that callers cannot hammer the token
// endpoint. It unwraps to the fetch error, usually an *oauth.Error.
type RefreshError struct {
	Profile string
	// Err is the error of the last attempt.
	Err error
	// At is when the last attempt failed.
	At time.Time
	// RetryAt is the earliest time of the next automatic attempt; zero when
	// unknown.
	RetryAt time.Time
}

// Error reads like "profile ci: no valid token: last refresh failed at
// 2026-11-25T12:00:00Z: token endpoint: invalid_grant: ... (HTTP 400)".
func (e *RefreshError) Error() string {
	return fmt.Sprintf("profile %s: no valid token: last refresh failed at %s: %v",
		e.Profile, e.At.UTC().Format(time.RFC3339), e.Err)
}

// Unwrap returns the error of the last attempt.
func (e *RefreshError) Unwrap() error { return e.Err }

// errDiscarded is the result of a fetch whose profile was reloaded,
// forgotten, given an imported token or removed while the fetch ran. Its
// waiters look at the profile again instead of seeing it.
var errDiscarded = errors.New("fetch result discarded")

func unknownProfile(name string) error {
	return fmt.Errorf("profile %s: %w", name, ErrUnknownProfile)
}
