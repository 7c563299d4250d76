// Package source turns a configured profile into the token requests that
// obtain its tokens: which grant, which assertion, which client
// authentication, and when a refresh token is worth trying first.
package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/oauth"
)

// ErrImportOnly is returned for a profile whose tokens come only from
// `tokctl import` and that holds no refresh token to renew them.
var ErrImportOnly = errors.New("this profile gets its tokens from `tokctl import PROFILE FILE`")

// Source obtains tokens for one profile. It is safe for concurrent use.
type Source struct {
	profile    string
	grant      string
	client     *oauth.Client
	user       *oauth.Assertion // the jwt-bearer user assertion; nil for other grants
	scopes     []string
	canRefresh bool // whether the client can authenticate a refresh_token grant
	// refreshRefused, when set, is called with the refresh_token grant's
	// error each time Fetch falls back from it to the profile's own grant.
	refreshRefused func(err error)
}

// New returns the Source for a profile that config.Load validated, with
// an HTTP transport of its own.
func New(p *config.Profile) *Source { return NewWithTransport(p, nil) }

// NewWithTransport returns the Source for a profile that config.Load
// validated, sending its token requests through tr, which many profiles
// may share: the daemon shares one oauth.NewTransport per CA pool. tr must
// trust the profile's p.Creds.RootCAs; the profile's timeout still bounds
// each of its requests. Nil tr means a transport of its own.
func NewWithTransport(p *config.Profile, tr http.RoundTripper) *Source {
	var hc *http.Client
	if tr == nil {
		hc = oauth.NewHTTPClient(p.Creds.RootCAs, p.Timeout.Duration)
	} else {
		hc = oauth.NewHTTPClientWith(tr, p.Timeout.Duration)
	}
	s := &Source{
		profile: p.Name,
		grant:   p.GrantType,
		scopes:  slices.Clone(p.Scopes),
		client:  &oauth.Client{TokenURL: p.TokenURL, HTTPClient: hc},
	}
	if p.RefreshToken && !slices.Contains(s.scopes, "offline_access") {
		s.scopes = append(s.scopes, "offline_access")
	}
	lifetime := oauth.DefaultAssertionLifetime
	var audience []string
	if p.DomainURL != "" {
		audience = []string{p.DomainURL + "/", "https://identity.oraclecloud.com/"}
	}
	if a := p.Assertion; a != nil {
		lifetime = a.Lifetime.Duration
		if len(a.Audience) > 0 {
			audience = a.Audience
		}
		s.user = &oauth.Assertion{
			Issuer:   p.ClientID,
			Subject:  a.Subject,
			Audience: audience,
			Lifetime: lifetime,
			Key:      p.Creds.UserKey,
			KeyID:    a.KeyID,
			X5T:      p.Creds.UserX5T,
		}
	}
	switch {
	case p.Creds.ClientSecret != "":
		s.client.Auth = oauth.SecretAuth{ClientID: p.ClientID, Secret: p.Creds.ClientSecret}
		s.canRefresh = true
	case p.Creds.ClientKey != nil:
		// RFC 7523 §3 lets the token URL stand in aud; fosite and other
		// generic servers demand it, the identity domain accepts it.
		aud := slices.Clone(audience)
		if !slices.Contains(aud, p.TokenURL) {
			aud = append(aud, p.TokenURL)
		}
		s.client.Auth = oauth.AssertionAuth{Assertion: oauth.Assertion{
			Issuer:   p.ClientID,
			Subject:  p.ClientID,
			Audience: aud,
			Lifetime: lifetime,
			Key:      p.Creds.ClientKey,
			KeyID:    p.ClientKeyID,
			X5T:      p.Creds.ClientX5T,
		}}
		s.canRefresh = true
	default:
		s.client.Auth = oauth.PublicAuth{ClientID: p.ClientID}
	}
	return s
}

// SetClock makes the token requests read the time from now (their
// assertions' iat and exp, and the tokens' absolute expiry), as the
// cache does; tests and simulations inject a fake clock this way.
func (s *Source) SetClock(now func() time.Time) { s.client.Now = now }

// OnRefreshRefused makes Fetch call f with the refresh_token grant's
// error each time the server refuses the refresh token or the grant and
// Fetch falls back to the profile's own grant. Fetch then returns only
// the fallback's outcome, so f is how that refusal is counted and logged.
// Call it before the Source is used.
func (s *Source) OnRefreshRefused(f func(err error)) { s.refreshRefused = f }

// CanFetch reports whether the profile can obtain a token without a
// refresh token, that is, whether its grant is not import.
func (s *Source) CanFetch() bool { return s.grant != "import" }

// Fetch obtains a new token. With a refresh token it first tries the
// refresh_token grant; when the server rejects that refresh token
// (invalid_grant) or the grant itself (unauthorized_client,
// unsupported_grant_type) it falls back to the profile's own grant, where
// it has one. The token it returns carries the refresh token to use next.
func (s *Source) Fetch(ctx context.Context, refreshToken string) (*oauth.Token, error) {
	if refreshToken != "" && s.canRefresh {
		tok, err := s.client.Refresh(ctx, refreshToken, nil)
		if err == nil || !s.CanFetch() || !refreshUseless(err) {
			return tok, err
		}
		if s.refreshRefused != nil {
			s.refreshRefused(err)
		}
	}
	switch s.grant {
	case "client_credentials":
		return s.client.ClientCredentials(ctx, s.scopes)
	case "import":
		if refreshToken != "" && !s.canRefresh {
			return nil, fmt.Errorf("%w: it holds a refresh token but no client_secret_file or client_key_file to use it", ErrImportOnly)
		}
		return nil, ErrImportOnly
	default:
		return s.client.JWTBearer(ctx, s.user, s.scopes)
	}
}

// refreshUseless reports whether err refuses the refresh token or the
// refresh_token grant itself (RFC 6749 §5.2), so that no retry of the
// refresh can succeed but the profile's own grant may. A retryable
// answer (a 429 whatever its code) is not worth a second request.
func refreshUseless(err error) bool {
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Retryable {
		return false
	}
	switch oe.Code {
	case oauth.CodeInvalidGrant, oauth.CodeUnauthorizedClient, oauth.CodeUnsupportedGrantType:
		return true
	}
	return false
}
