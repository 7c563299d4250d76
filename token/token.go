// Package token defines an access token as tokd holds it, and how a
// failure to obtain one says whether it is worth retrying. It sits below
// both the token-endpoint client (package oauth) and the cache, so that
// the cache links nothing of HTTP.
package token

import "time"

// Token is an access token as received, with its absolute expiry.
type Token struct {
	AccessToken  string
	TokenType    string // "Bearer": package oauth refuses any other type
	RefreshToken string // empty when none was issued
	Scope        string // the granted scope, when the server says
	IssuedAt     time.Time
	Expiry       time.Time
}

// Valid reports whether the token is still usable at now.
func (t *Token) Valid(now time.Time) bool {
	return t != nil && t.AccessToken != "" && now.Before(t.Expiry)
}

// RetryError is implemented by errors that know whether the request that
// failed may succeed later (*oauth.Error does).
type RetryError interface {
	error
	// Temporary reports whether the same request may succeed later.
	Temporary() bool
	// RetryDelay is the server's Retry-After, or 0.
	RetryDelay() time.Duration
}
