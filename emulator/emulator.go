// Package emulator emulates the token endpoint of an OCI IAM identity
// domain and the rules the domain applies to the JWT Assertion grant
// (RFC 7523), so that tokd can be developed and tested without Oracle
// Cloud. It is production code: `tokd --dev` serves it on loopback. It
// imports only the standard library and golang-jwt, never logs a token, a
// secret or an assertion, and is safe for concurrent use.
//
// # Use
//
//	em, err := emulator.New(emulator.Options{Now: clock.Now})
//	srv := httptest.NewServer(em)
//	em.SetDomainURL(srv.URL) // optional: by default the URL the request came to
//	em.AddUser("alice")
//	em.AddApp(emulator.App{ClientID: "app", ClientSecret: "s", Certs: map[string]*x509.Certificate{"alias": cert},
//		GrantTypes: []string{emulator.GrantJWTBearer, emulator.GrantRefreshToken},
//		AllowedScopes: []string{"https://api.example.com/read"}})
//	em.AddResourceServer(emulator.ResourceServer{Audience: "https://api.example.com/", Scopes: []string{"read"}, AllowRefresh: true})
//
// NewDev does all of that with freshly generated keys for `tokd --dev`.
//
// # Endpoints
//
//   - POST /oauth2/v1/token: the grants urn:ietf:params:oauth:grant-type:jwt-bearer,
//     client_credentials and refresh_token.
//   - GET /.well-known/openid-configuration: issuer, token_endpoint, jwks_uri.
//   - GET /admin/v1/SigningCert/jwk: the emulator's signing key as a JWK set.
//
// # Rules
//
// Client authentication is HTTP Basic (client ID and secret each
// form-URL-decoded after base64, RFC 6749 §2.3.1) or a client assertion
// (client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
// RFC 7523 §2.2) whose iss and sub are the client ID. Every app is
// confidential: a request with neither fails, as do a client_secret in the
// body and a request using both methods. Authentication failures answer
// 401 invalid_client with WWW-Authenticate: Basic.
//
// An assertion, user or client, must be signed RS256 with the key of a
// certificate imported into the app: the header's x5t (base64url SHA-1
// thumbprint) names it, or else its kid (the alias); x5t wins when both
// are present. The certificate must be within its validity period. iss
// must be the client ID; sub a user added with AddUser (user assertion)
// or the client ID (client assertion); aud must contain the domain URL
// (with or without a trailing slash) or https://identity.oraclecloud.com/.
// exp is required and must not have passed; iat and nbf are optional but
// must not lie in the future; ClockSkew (30 s by default) is allowed on
// each. exp - iat (exp - now without iat) may not exceed
// MaxAssertionLifetime (1 h by default). jti is required and single-use
// per client, shared between user and client assertions. A bad user
// assertion answers 400 invalid_grant; a bad client assertion 401
// invalid_client.
//
// Scopes: urn:opc:idm:__myscopes__ (always allowed) and
// urn:opc:idm:role.<Role> (role name URL-encoded inside the scope) belong
// to the identity domain, whose tokens have the domain URL as audience.
// Another resource server owns the scopes Audience+scope. Every scope but
// __myscopes__ must be listed in the app's AllowedScopes. A request needs
// at least one scope (invalid_scope otherwise). Scopes of two resource
// servers fail with invalid_scope unless urn:opc:resource:multiresourcescope
// is present; the answer is then {"tokenResponses":[...]}, one token per
// resource server in the order they first appear (with a single resource
// server the scope changes nothing). urn:opc:resource:expiry=<seconds>
// shortens, never lengthens, the lifetime, to no less than 60 s.
// urn:opc:resource:consumer::all cannot be combined with other scopes.
// offline_access asks for a refresh token, issued only when the app has the
// refresh_token grant and the resource server allows refresh (the identity
// domain always does); otherwise the token comes without one.
//
// Access token lifetime: the resource server's AccessTokenLifetime
// (Options.DomainAccessTokenLifetime for identity-domain scopes; 1 h by
// default), shortened by the app's AccessTokenLifetime when that is
// shorter, then by the expiry scope; always between 60 s and one year.
//
// Refresh tokens are opaque, stored only as SHA-256 digests, bound to the
// client, single-use and rotated: each refresh returns a new refresh token
// that inherits its predecessor's expiry (RefreshTokenLifetime, one week by
// default, from the original grant), and the old one then fails with
// invalid_grant. A refresh may narrow the scope, never widen it.
//
// # Faults, outages and rate limits
//
// Inject queues faults that the next token requests take in order;
// SetOutage makes every token request take one fault until ClearFaults. An
// outage leaves the queue untouched. Faulted requests do not count towards
// the rate limit. Faults, outages and rate limits apply to the token
// endpoint only. The rate limit (SetRateLimit, off by default) is a sliding
// window over the injected clock, per second and per minute, counting the
// requests it lets through; it answers 429 with a JSON
// temporarily_unavailable body and, only when RateLimit.RetryAfter is set
// (the identity domain documents none), a Retry-After header.
//
// # Observability
//
// Stats reports the number of token requests, in total and per grant, and
// the details of the last Options.History requests: grant type, client ID,
// authentication method, scope, the header and claims of each assertion,
// status and error code. Secrets, assertions and tokens are never stored.
package emulator

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Grant types (RFC 6749 §4.4, §6; RFC 7523 §2.1).
const (
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// ClientAssertionType is the client_assertion_type of RFC 7523 §2.2.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Scopes with a meaning of their own to the identity domain.
const (
	ScopeMyScopes      = "urn:opc:idm:__myscopes__"
	ScopeRolePrefix    = "urn:opc:idm:role."
	ScopeMultiResource = "urn:opc:resource:multiresourcescope"
	ScopeExpiryPrefix  = "urn:opc:resource:expiry="
	ScopeConsumerAll   = "urn:opc:resource:consumer::all"
	ScopeOfflineAccess = "offline_access"
)

// OracleAudience is the audience every identity domain accepts in an
// assertion besides its own URL; it is also the default access token issuer.
const OracleAudience = "https://identity.oraclecloud.com/"

// Paths served by the emulator.
const (
	TokenPath     = "/oauth2/v1/token"
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/admin/v1/SigningCert/jwk"
)

// Defaults for the zero values of Options, App and ResourceServer.
const (
	DefaultAccessTokenLifetime  = time.Hour
	DefaultRefreshTokenLifetime = 7 * 24 * time.Hour
	DefaultClockSkew            = 30 * time.Second
	DefaultMaxAssertionLifetime = time.Hour
	DefaultHistory              = 64
	MinAccessTokenLifetime      = 60 * time.Second
	MaxAccessTokenLifetime      = 365 * 24 * time.Hour
)

// SigningKeyID is the kid of the emulator's signing key, as an identity
// domain names its own.
const SigningKeyID = "SIGNING_KEY"

// Options configures an Emulator. The zero value is usable.
type Options struct {
	// DomainURL is the identity domain's URL, e.g.
	// "https://idcs-0123.identity.oraclecloud.com". Empty: the scheme and
	// Host of each request. SetDomainURL changes it later.
	DomainURL string
	// Issuer is the iss of access tokens and discovery. Empty: OracleAudience.
	Issuer string
	// Now is the clock for every expiry, iat and rate decision. Nil: time.Now.
	Now func() time.Time
	// SigningKey signs access tokens. Nil: a fresh 2048-bit key.
	SigningKey *rsa.PrivateKey
	// ClockSkew is the leeway on assertion exp, iat and nbf. Zero:
	// DefaultClockSkew; negative: none.
	ClockSkew time.Duration
	// MaxAssertionLifetime caps exp - iat of an assertion. Zero or
	// negative: DefaultMaxAssertionLifetime (likewise for the lifetimes below).
	MaxAssertionLifetime time.Duration
	// DomainAccessTokenLifetime is the lifetime of tokens for
	// identity-domain scopes. Zero: DefaultAccessTokenLifetime.
	DomainAccessTokenLifetime time.Duration
	// RefreshTokenLifetime is the lifetime of a refresh grant. Zero: DefaultRefreshTokenLifetime.
	RefreshTokenLifetime time.Duration
	// RateLimit is the initial rate limit. Zero: none.
	RateLimit RateLimit
	// History is how many requests Stats keeps. Zero: DefaultHistory; negative: none.
	History int
	// Logger, when set, gets one line per token request: grant, client ID,
	// authentication method, status and error. Never a secret or token.
	Logger *slog.Logger
}

// App is a confidential application (an OAuth client) of the domain.
type App struct {
	ClientID string
	// ClientSecret is the secret for HTTP Basic; empty: Basic always fails.
	ClientSecret string
	// Certs maps alias -> certificate imported into the app, whose RSA
	// keys sign the app's assertions.
	Certs map[string]*x509.Certificate
	// GrantTypes lists the grants the app may use: GrantJWTBearer,
	// GrantClientCredentials, GrantRefreshToken.
	GrantTypes []string
	// AccessTokenLifetime, when set, caps the lifetime of the app's tokens.
	AccessTokenLifetime time.Duration
	// AllowedScopes lists the fully qualified scopes the app may request:
	// "https://api.example.com/read", "urn:opc:idm:role.User Administrator"
	// (role names unencoded). ScopeMyScopes is always allowed.
	AllowedScopes []string
}

// ResourceServer is a resource application of the domain: the owner of
// the scopes Audience+Scopes[i].
type ResourceServer struct {
	Audience string   // e.g. "https://api.example.com/"
	Scopes   []string // e.g. "read": the fully qualified scope is Audience+"read"
	// AllowRefresh reports whether tokens for this server may come with a refresh token.
	AllowRefresh bool
	// AccessTokenLifetime of tokens for this server. Zero: DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration
}

// Emulator is an http.Handler emulating an identity domain. Create it with New.
type Emulator struct {
	now             func() time.Time
	signer          signer
	issuer          string
	skew            time.Duration
	maxAssertion    time.Duration
	domainLifetime  time.Duration
	refreshLifetime time.Duration
	history         int
	logger          *slog.Logger
	mux             *http.ServeMux

	mu        sync.Mutex // guards the fields below
	domainURL string
	apps      map[string]*app // replaced, never mutated
	users     map[string]bool
	servers   map[string]*ResourceServer // by audience; replaced, never mutated
	jtis      map[string]time.Time       // client ID + "\x00" + jti -> when it may be forgotten
	refresh   map[string]*refreshGrant   // SHA-256 of the token -> grant
	faults    []Fault
	outage    *Fault
	limiter   Limiter
	stats     Stats
}

// app is an App prepared for lookups.
type app struct {
	App
	grants   map[string]bool
	allowed  map[string]bool
	byX5T    map[string]*x509.Certificate
	certKeys map[*x509.Certificate]*rsa.PublicKey
}

// New returns an Emulator with a fresh signing key unless opts has one.
func New(opts Options) (*Emulator, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	domain, err := normalizeDomainURL(opts.DomainURL)
	if err != nil {
		return nil, err
	}
	s, err := newSigner(opts.SigningKey, now())
	if err != nil {
		return nil, err
	}
	e := &Emulator{
		now:             now,
		signer:          s,
		issuer:          cmpOr(opts.Issuer, OracleAudience),
		skew:            durationOr(opts.ClockSkew, DefaultClockSkew),
		maxAssertion:    positiveOr(opts.MaxAssertionLifetime, DefaultMaxAssertionLifetime),
		domainLifetime:  clampLifetime(positiveOr(opts.DomainAccessTokenLifetime, DefaultAccessTokenLifetime)),
		refreshLifetime: positiveOr(opts.RefreshTokenLifetime, DefaultRefreshTokenLifetime),
		history:         opts.History,
		logger:          opts.Logger,
		domainURL:       domain,
		apps:            make(map[string]*app),
		users:           make(map[string]bool),
		servers:         make(map[string]*ResourceServer),
		jtis:            make(map[string]time.Time),
		refresh:         make(map[string]*refreshGrant),
		limiter:         Limiter{Limit: opts.RateLimit},
	}
	if e.history == 0 {
		e.history = DefaultHistory
	}
	e.stats.ByGrant = make(map[string]int)
	e.mux = http.NewServeMux()
	e.mux.HandleFunc("POST "+TokenPath, e.serveToken)
	e.mux.HandleFunc("GET "+DiscoveryPath, e.serveDiscovery)
	e.mux.HandleFunc("GET "+JWKSPath, e.serveJWKS)
	return e, nil
}

// ServeHTTP serves the emulated endpoints.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// SetDomainURL sets the domain URL (scheme and host, e.g. an
// httptest.Server's URL); empty restores the default, each request's own.
func (e *Emulator) SetDomainURL(u string) error {
	d, err := normalizeDomainURL(u)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.domainURL = d
	e.mu.Unlock()
	return nil
}

func normalizeDomainURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("emulator: domain URL %q is not an http(s) URL of a host", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// domainFor returns the domain URL that applies to r.
func (e *Emulator) domainFor(r *http.Request) string {
	e.mu.Lock()
	d := e.domainURL
	e.mu.Unlock()
	if d != "" {
		return d
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// AddUser adds a user that user assertions may name as sub.
func (e *Emulator) AddUser(name string) {
	e.mu.Lock()
	e.users[name] = true
	e.mu.Unlock()
}

// AddApp adds an app, or replaces the app with the same client ID.
// Refresh tokens issued to a replaced app stay valid.
func (e *Emulator) AddApp(a App) error {
	if a.ClientID == "" {
		return errors.New("emulator: app without a client ID")
	}
	p := &app{
		App:      a,
		grants:   make(map[string]bool),
		allowed:  make(map[string]bool),
		byX5T:    make(map[string]*x509.Certificate),
		certKeys: make(map[*x509.Certificate]*rsa.PublicKey),
	}
	p.Certs = make(map[string]*x509.Certificate, len(a.Certs))
	for alias, cert := range a.Certs {
		if cert == nil {
			return fmt.Errorf("emulator: app %q: certificate %q is nil", a.ClientID, alias)
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("emulator: app %q: certificate %q has no RSA key", a.ClientID, alias)
		}
		p.Certs[alias] = cert
		p.byX5T[Thumbprint(cert)] = cert
		p.certKeys[cert] = pub
	}
	for _, g := range a.GrantTypes {
		switch g {
		case GrantJWTBearer, GrantClientCredentials, GrantRefreshToken:
			p.grants[g] = true
		default:
			return fmt.Errorf("emulator: app %q: unsupported grant type %q", a.ClientID, g)
		}
	}
	for _, s := range a.AllowedScopes {
		p.allowed[s] = true
	}
	p.GrantTypes = slices.Clone(a.GrantTypes)
	p.AllowedScopes = slices.Clone(a.AllowedScopes)
	e.mu.Lock()
	e.apps[a.ClientID] = p
	e.mu.Unlock()
	return nil
}

// AddResourceServer adds a resource server, or replaces the one with the
// same audience.
func (e *Emulator) AddResourceServer(rs ResourceServer) error {
	if rs.Audience == "" {
		return errors.New("emulator: resource server without an audience")
	}
	if strings.HasPrefix(rs.Audience, "urn:opc:idm:") || strings.HasPrefix(rs.Audience, "urn:opc:resource:") {
		return fmt.Errorf("emulator: audience %q is reserved for the identity domain", rs.Audience)
	}
	if len(rs.Scopes) == 0 {
		return fmt.Errorf("emulator: resource server %q has no scopes", rs.Audience)
	}
	c := rs
	c.Scopes = slices.Clone(rs.Scopes)
	c.AccessTokenLifetime = clampLifetime(positiveOr(rs.AccessTokenLifetime, DefaultAccessTokenLifetime))
	e.mu.Lock()
	e.servers[c.Audience] = &c
	e.mu.Unlock()
	return nil
}

// lookupApp returns the app with the client ID, or nil.
func (e *Emulator) lookupApp(clientID string) *app {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.apps[clientID]
}

func (e *Emulator) isUser(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.users[name]
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// durationOr returns d, def when d is zero, and 0 when d is negative.
func durationOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// positiveOr returns d, or def when d is not positive.
func positiveOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func clampLifetime(d time.Duration) time.Duration {
	return min(max(d, MinAccessTokenLifetime), MaxAccessTokenLifetime)
}
