package oauth_test

// These tests run tokd's oauth.Client against a real authorization server,
// ory/fosite v0.49.0, served by httptest. The rules fosite enforces are in
// /work/shared/docs/test-peers.md; the fosite setup lives in newFositeServer.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/rfc7523"
	"github.com/ory/fosite/storage"

	"github.com/tokd/tokd/oauth"
)

// Identities registered in the fosite server.
const (
	fositeUser          = "alice" // sub of every user assertion
	fositeUserKeyID     = "user-cert"
	fositeClientKeyID   = "client-cert"
	fositeBasicID       = "tokd-basic"
	fositeBasicSecret   = "correct horse battery staple"
	fositeSpecialID     = "tokd app:1+/é&=" // every character that Basic or a form would mangle unencoded
	fositeSpecialSecret = "s3cr+t/=&"
	fositePKJWTID       = "tokd-pkjwt" // private_key_jwt client
	fositeCCOnlyID      = "tokd-cc-only"
	fositeCCOnlySecret  = "cc-only-secret"
)

// fositeScopes are the scopes every client and every trusted user key may use.
var fositeScopes = []string{"read", "write", "offline_access"}

// fositeKeyPair holds the RSA keys the tests sign with; generated once for
// the package because RSA key generation is slow under -race.
type fositeKeyPair struct {
	user   *rsa.PrivateKey // trusted by fosite for user assertions
	client *rsa.PrivateKey // registered as the private_key_jwt client's JWK
	rogue  *rsa.PrivateKey // known to nobody
}

var fositeKeys = sync.OnceValue(func() fositeKeyPair {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	return fositeKeyPair{user: gen(), client: gen(), rogue: gen()}
})

// fositeServer is one fosite token endpoint on httptest.
type fositeServer struct {
	TokenURL  string
	Provider  fosite.OAuth2Provider
	Transport http.RoundTripper // the httptest server's client transport
	Keys      fositeKeyPair
}

// newFositeServer composes fosite with the client_credentials,
// refresh_token, jwt-bearer (RFC 7523) and introspection handlers over a
// memory store, registers the clients and the trusted issuer keys, and
// serves the token endpoint at TokenURL.
func newFositeServer(t *testing.T) *fositeServer {
	t.Helper()
	keys := fositeKeys()

	mux := http.NewServeMux()
	ts := httptest.NewUnstartedServer(mux)
	t.Cleanup(ts.Close)
	// The listener exists before Start, so the token URL (which fosite
	// matches against aud exactly) is known before anything is served.
	tokenURL := "http://" + ts.Listener.Addr().String() + "/oauth2/v1/token"

	cfg := &fosite.Config{
		AccessTokenLifespan:        time.Hour,
		RefreshTokenLifespan:       7 * 24 * time.Hour,
		GlobalSecret:               []byte("tokd-fosite-test-global-hmac-secret!"),
		HashCost:                   4, // bcrypt.MinCost: keep secret checks cheap
		TokenURL:                   tokenURL,
		SendDebugMessagesToClients: true, // error_description carries fosite's debug text
		// Defaults kept on purpose: client authentication is required,
		// jti and iat are required, exp - iat <= 24 h.
	}
	ctx := context.Background()
	store := storage.NewMemoryStore()
	hash := func(secret string) []byte {
		h, err := cfg.GetSecretsHasher(ctx).Hash(ctx, []byte(secret))
		if err != nil {
			t.Fatalf("hash secret: %v", err)
		}
		return h
	}
	allGrants := []string{oauth.GrantJWTBearer, oauth.GrantRefreshToken, oauth.GrantClientCredentials}
	secretClient := func(id, secret string, grants []string) *fosite.DefaultClient {
		return &fosite.DefaultClient{
			ID:         id,
			Secret:     hash(secret),
			GrantTypes: grants,
			Scopes:     fositeScopes,
			// The jwt-bearer grant grants the assertion's aud; the refresh
			// grant then checks it against the client's audience.
			Audience: []string{tokenURL},
		}
	}
	store.Clients[fositeBasicID] = secretClient(fositeBasicID, fositeBasicSecret, allGrants)
	store.Clients[fositeSpecialID] = secretClient(fositeSpecialID, fositeSpecialSecret, allGrants)
	store.Clients[fositeCCOnlyID] = secretClient(fositeCCOnlyID, fositeCCOnlySecret, []string{oauth.GrantClientCredentials})
	store.Clients[fositePKJWTID] = &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID:         fositePKJWTID,
			GrantTypes: allGrants,
			Scopes:     fositeScopes,
			Audience:   []string{tokenURL},
		},
		JSONWebKeys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &keys.client.PublicKey, KeyID: fositeClientKeyID, Algorithm: "RS256", Use: "sig",
		}}},
		TokenEndpointAuthMethod:           "private_key_jwt",
		TokenEndpointAuthSigningAlgorithm: "RS256",
	}
	// Trusted issuers: each client may assert user alice with the user key.
	for _, iss := range []string{fositeBasicID, fositeSpecialID, fositePKJWTID, fositeCCOnlyID} {
		store.IssuerPublicKeys[iss] = storage.IssuerPublicKeys{
			Issuer: iss,
			KeysBySub: map[string]storage.SubjectPublicKeys{
				fositeUser: {
					Subject: fositeUser,
					Keys: map[string]storage.PublicKeyScopes{
						fositeUserKeyID: {
							Key: &jose.JSONWebKey{
								Key: &keys.user.PublicKey, KeyID: fositeUserKeyID, Algorithm: "RS256", Use: "sig",
							},
							Scopes: fositeScopes,
						},
					},
				},
			},
		}
	}

	strategy := compose.NewOAuth2HMACStrategy(cfg)
	provider := compose.Compose(cfg, store, strategy,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		fositeRefreshingJWTBearerFactory,
	)

	mux.HandleFunc("POST /oauth2/v1/token", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ar, err := provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{})
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		// fosite leaves granting to the application for client_credentials
		// (the handler has already checked them against the client's scopes).
		if ar.GetGrantTypes().ExactOne(oauth.GrantClientCredentials) {
			for _, s := range ar.GetRequestedScopes() {
				ar.GrantScope(s)
			}
		}
		resp, err := provider.NewAccessResponse(ctx, ar)
		if err != nil {
			provider.WriteAccessError(ctx, w, ar, err)
			return
		}
		provider.WriteAccessResponse(ctx, w, ar, resp)
	})
	ts.Start()

	return &fositeServer{TokenURL: tokenURL, Provider: provider, Transport: ts.Client().Transport, Keys: keys}
}

// fositeRefreshingJWTBearer is fosite's jwt-bearer handler plus a refresh token
// when offline/offline_access was granted: fosite's own handler issues
// access tokens only (as do Hydra and zitadel), and tokd's refresh path
// needs a refresh token to exchange.
type fositeRefreshingJWTBearer struct {
	*rfc7523.Handler
	strategy oauth2.CoreStrategy
	storage  oauth2.RefreshTokenStorage
	config   fosite.Configurator
}

func fositeRefreshingJWTBearerFactory(config fosite.Configurator, store, strategy any) any {
	return &fositeRefreshingJWTBearer{
		Handler:  compose.RFC7523AssertionGrantFactory(config, store, strategy).(*rfc7523.Handler),
		strategy: strategy.(oauth2.CoreStrategy),
		storage:  store.(oauth2.RefreshTokenStorage),
		config:   config,
	}
}

func (h *fositeRefreshingJWTBearer) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if err := h.Handler.PopulateTokenEndpointResponse(ctx, req, resp); err != nil {
		return err // includes ErrUnknownRequest for other grants
	}
	if !req.GetGrantedScopes().HasOneOf(h.config.GetRefreshTokenScopes(ctx)...) {
		return nil
	}
	req.GetSession().SetExpiresAt(fosite.RefreshToken,
		time.Now().UTC().Add(h.config.GetRefreshTokenLifespan(ctx)).Round(time.Second))
	refresh, refreshSig, err := h.strategy.GenerateRefreshToken(ctx, req)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	accessSig := h.strategy.AccessTokenSignature(ctx, resp.GetAccessToken())
	if err := h.storage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, req.Sanitize(nil)); err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	resp.SetExtra("refresh_token", refresh)
	return nil
}

// userAssertion is a user assertion fosite trusts: iss = the client,
// sub = alice, aud = the token URL, signed with the trusted user key.
func (s *fositeServer) userAssertion(issuer string) *oauth.Assertion {
	return &oauth.Assertion{
		Issuer:   issuer,
		Subject:  fositeUser,
		Audience: []string{s.TokenURL},
		Key:      s.Keys.user,
		KeyID:    fositeUserKeyID,
	}
}

// clientAssertionAuth authenticates the private_key_jwt client.
func (s *fositeServer) clientAssertionAuth() oauth.AssertionAuth {
	return oauth.AssertionAuth{Assertion: oauth.Assertion{
		Issuer:   fositePKJWTID,
		Subject:  fositePKJWTID,
		Audience: []string{s.TokenURL},
		Key:      s.Keys.client,
		KeyID:    fositeClientKeyID,
	}}
}

// client returns a tokd client of s whose clock stands still at now and
// whose exchanges are recorded by the returned transport.
func (s *fositeServer) client(auth oauth.ClientAuth, now time.Time) (*oauth.Client, *fositeRecorder) {
	rec := &fositeRecorder{next: s.Transport}
	return &oauth.Client{
		TokenURL:   s.TokenURL,
		Auth:       auth,
		HTTPClient: &http.Client{Transport: rec},
		Now:        func() time.Time { return now },
	}, rec
}

// fositeRecorder records every request and response body; when replay
// is set it sends that body instead of the request's own (a replay attack
// with the exact bytes of an earlier request).
type fositeRecorder struct {
	next http.RoundTripper

	mu       sync.Mutex
	requests []string
	bodies   []string
	replay   string
}

func (rt *fositeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	if rt.replay != "" {
		body = []byte(rt.replay)
	}
	rt.requests = append(rt.requests, string(body))
	rt.mu.Unlock()

	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	resp, err := rt.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	rt.mu.Lock()
	rt.bodies = append(rt.bodies, string(respBody))
	rt.mu.Unlock()
	return resp, nil
}

func (rt *fositeRecorder) lastRequest(t *testing.T) string {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.requests) == 0 {
		t.Fatal("no request recorded")
	}
	return rt.requests[len(rt.requests)-1]
}

func (rt *fositeRecorder) setReplay(body string) {
	rt.mu.Lock()
	rt.replay = body
	rt.mu.Unlock()
}

// fositeWireToken is fosite's success body as sent.
type fositeWireToken struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// lastToken decodes the last recorded response body.
func (rt *fositeRecorder) lastToken(t *testing.T) fositeWireToken {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.bodies) == 0 {
		t.Fatal("no response recorded")
	}
	var w fositeWireToken
	if err := json.Unmarshal([]byte(rt.bodies[len(rt.bodies)-1]), &w); err != nil {
		t.Fatalf("response body: %v", err)
	}
	return w
}

// fositeCheckToken asserts that tok is exactly what fosite sent, received at
// now: expiry = now + expires_in, token type normalised to "Bearer".
func fositeCheckToken(t *testing.T, tok *oauth.Token, wire fositeWireToken, now time.Time, wantScope string) {
	t.Helper()
	if wire.TokenType != "bearer" {
		t.Errorf("fosite sent token_type %q, want %q", wire.TokenType, "bearer")
	}
	// fosite computes expires_in from a session expiry rounded to the second.
	if wire.ExpiresIn < 3590 || wire.ExpiresIn > 3600 {
		t.Errorf("fosite sent expires_in %d, want about 3600", wire.ExpiresIn)
	}
	want := &oauth.Token{
		AccessToken:  wire.AccessToken,
		TokenType:    "Bearer",
		RefreshToken: wire.RefreshToken,
		Scope:        wantScope,
		IssuedAt:     now,
		Expiry:       now.Add(time.Duration(wire.ExpiresIn) * time.Second),
	}
	if diff := cmp.Diff(want, tok); diff != "" {
		t.Errorf("token mismatch (-want +got):\n%s", diff)
	}
	if tok.AccessToken == "" {
		t.Error("empty access token")
	}
}

// fositeIntrospection is what fosite knows about an access token.
type fositeIntrospection struct {
	Subject  string
	ClientID string
	Scopes   []string
}

func (s *fositeServer) introspect(t *testing.T, accessToken string) fositeIntrospection {
	t.Helper()
	use, ar, err := s.Provider.IntrospectToken(context.Background(), accessToken, fosite.AccessToken, &fosite.DefaultSession{})
	if err != nil {
		t.Fatalf("fosite does not accept the access token: %v", err)
	}
	if use != fosite.AccessToken {
		t.Fatalf("token use %q, want access token", use)
	}
	return fositeIntrospection{
		Subject:  ar.GetSession().GetSubject(),
		ClientID: ar.GetClient().GetID(),
		Scopes:   ar.GetGrantedScopes(),
	}
}

// fositeCheckError asserts that err is an *oauth.Error with the given
// status and code, not retryable and without a Retry-After.
func fositeCheckError(t *testing.T, err error, wantStatus int, wantCode string) *oauth.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("request succeeded, want %s (HTTP %d)", wantCode, wantStatus)
	}
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *oauth.Error", err, err)
	}
	want := oauth.Error{StatusCode: wantStatus, Code: wantCode, Retryable: false}
	if diff := cmp.Diff(want, *oe, cmpopts.IgnoreFields(oauth.Error{}, "Description", "Err")); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s\nerror: %v", diff, err)
	}
	if oe.Description == "" {
		t.Errorf("error %v has no description", err)
	}
	return oe
}

// fositeRawBasic sends Basic credentials WITHOUT the URL-encoding of
// RFC 6749 §2.3.1, as a naive client would.
type fositeRawBasic struct{ id, secret string }

func (a fositeRawBasic) Authenticate(h http.Header, _ url.Values, _ time.Time) error {
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.id+":"+a.secret)))
	return nil
}

// fositeNow is a fixed client clock near the real time: fosite checks
// assertion exp/iat against its own clock.
func fositeNow() time.Time { return time.Now().Truncate(time.Second) }

func TestFositeJWTBearer(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	tests := []struct {
		name     string
		auth     oauth.ClientAuth
		clientID string
		scopes   []string
	}{
		{"basic", oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}, fositeBasicID, []string{"read"}},
		{"basic with special characters", oauth.SecretAuth{ClientID: fositeSpecialID, Secret: fositeSpecialSecret}, fositeSpecialID, []string{"read", "write"}},
		{"private_key_jwt", srv.clientAssertionAuth(), fositePKJWTID, []string{"write"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := fositeNow()
			c, rec := srv.client(tt.auth, now)
			tok, err := c.JWTBearer(context.Background(), srv.userAssertion(tt.clientID), tt.scopes)
			if err != nil {
				t.Fatalf("JWTBearer: %v", err)
			}
			wire := rec.lastToken(t)
			wantScope := strings.Join(tt.scopes, " ")
			fositeCheckToken(t, tok, wire, now, wantScope)
			if tok.RefreshToken != "" {
				t.Errorf("refresh token %q issued without offline_access", tok.RefreshToken)
			}
			got := srv.introspect(t, tok.AccessToken)
			want := fositeIntrospection{Subject: fositeUser, ClientID: tt.clientID, Scopes: tt.scopes}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fosite's view of the token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFositeClientCredentials(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	tests := []struct {
		name     string
		auth     oauth.ClientAuth
		clientID string
	}{
		{"basic", oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}, fositeBasicID},
		{"basic with special characters", oauth.SecretAuth{ClientID: fositeSpecialID, Secret: fositeSpecialSecret}, fositeSpecialID},
		{"private_key_jwt", srv.clientAssertionAuth(), fositePKJWTID},
		{"client_credentials-only client", oauth.SecretAuth{ClientID: fositeCCOnlyID, Secret: fositeCCOnlySecret}, fositeCCOnlyID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := fositeNow()
			c, rec := srv.client(tt.auth, now)
			tok, err := c.ClientCredentials(context.Background(), []string{"read", "write"})
			if err != nil {
				t.Fatalf("ClientCredentials: %v", err)
			}
			fositeCheckToken(t, tok, rec.lastToken(t), now, "read write")
			got := srv.introspect(t, tok.AccessToken)
			want := fositeIntrospection{ClientID: tt.clientID, Scopes: []string{"read", "write"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fosite's view of the token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFositeRefreshRotation(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	tests := []struct {
		name     string
		auth     oauth.ClientAuth
		clientID string
	}{
		{"basic", oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}, fositeBasicID},
		{"private_key_jwt", srv.clientAssertionAuth(), fositePKJWTID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// The first grant runs on a clock 90 s behind, the refresh on the
			// current one: the new expiry must be measured from the
			// refresh's own receipt time. (The clock may lag but not lead
			// fosite's: it refuses a client assertion issued in the future.)
			now := fositeNow().Add(-90 * time.Second)
			later := now.Add(90 * time.Second)
			c, rec := srv.client(tt.auth, now)
			scopes := []string{"read", "offline_access"}
			first, err := c.JWTBearer(ctx, srv.userAssertion(tt.clientID), scopes)
			if err != nil {
				t.Fatalf("JWTBearer: %v", err)
			}
			fositeCheckToken(t, first, rec.lastToken(t), now, "read offline_access")
			if first.RefreshToken == "" {
				t.Fatal("no refresh token issued for offline_access")
			}

			c.Now = func() time.Time { return later }
			second, err := c.Refresh(ctx, first.RefreshToken, nil)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			wire := rec.lastToken(t)
			if wire.RefreshToken == "" {
				t.Fatal("fosite sent no refresh token on refresh: rotation not exercised")
			}
			fositeCheckToken(t, second, wire, later, "read offline_access")
			if second.RefreshToken == first.RefreshToken {
				t.Error("refresh token not rotated")
			}
			if second.AccessToken == first.AccessToken {
				t.Error("access token not renewed")
			}
			got := srv.introspect(t, second.AccessToken)
			want := fositeIntrospection{Subject: fositeUser, ClientID: tt.clientID, Scopes: scopes}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fosite's view of the refreshed token (-want +got):\n%s", diff)
			}

			// Reusing the rotated-out refresh token is refused for good.
			_, err = c.Refresh(ctx, first.RefreshToken, nil)
			fositeCheckError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)

			// fosite treats the reuse as theft and revokes the whole chain
			// (RFC 6819 §5.2.2.3): the new refresh token is dead too.
			_, err = c.Refresh(ctx, second.RefreshToken, nil)
			fositeCheckError(t, err, http.StatusBadRequest, oauth.CodeInvalidGrant)
		})
	}
}

func TestFositeRejections(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	basic := oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}
	withUser := func(mutate func(a *oauth.Assertion)) *oauth.Assertion {
		a := srv.userAssertion(fositeBasicID)
		mutate(a)
		return a
	}
	withClient := func(mutate func(a *oauth.Assertion)) oauth.AssertionAuth {
		auth := srv.clientAssertionAuth()
		mutate(&auth.Assertion)
		return auth
	}
	tests := []struct {
		name       string
		auth       oauth.ClientAuth
		user       *oauth.Assertion // nil: client_credentials
		scopes     []string
		wantStatus int
		wantCode   string
	}{
		{
			name: "user assertion signed with an untrusted key",
			auth: basic,
			user: withUser(func(a *oauth.Assertion) { a.Key = srv.Keys.rogue }),
			// the kid names the trusted key, whose signature check then fails
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidGrant,
		},
		{
			name:       "user assertion with an unregistered kid",
			auth:       basic,
			user:       withUser(func(a *oauth.Assertion) { a.Key, a.KeyID = srv.Keys.rogue, "rogue" }),
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidGrant,
		},
		{
			name:       "user assertion for an unknown user",
			auth:       basic,
			user:       withUser(func(a *oauth.Assertion) { a.Subject = "mallory" }),
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidGrant,
		},
		{
			name:       "user assertion for another audience",
			auth:       basic,
			user:       withUser(func(a *oauth.Assertion) { a.Audience = []string{"https://idcs.example.com/"} }),
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidGrant,
		},
		{
			name:       "user assertion lifetime over 24h",
			auth:       basic,
			user:       withUser(func(a *oauth.Assertion) { a.Lifetime = 25 * time.Hour }),
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidGrant,
		},
		{
			name:       "scope the user key may not request",
			auth:       basic,
			user:       srv.userAssertion(fositeBasicID),
			scopes:     []string{"read", "admin"},
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidScope,
		},
		{
			name:       "client_credentials scope the client may not request",
			auth:       basic,
			scopes:     []string{"admin"},
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeInvalidScope,
		},
		{
			name:       "wrong client secret",
			auth:       oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret + "x"},
			user:       srv.userAssertion(fositeBasicID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			name:       "unknown client",
			auth:       oauth.SecretAuth{ClientID: "nobody", Secret: fositeBasicSecret},
			user:       srv.userAssertion(fositeBasicID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			// Proves SecretAuth's encoding matters (the same credentials
			// URL-encoded succeed in TestFositeJWTBearer): fosite
			// URL-decodes the Basic secret, turning "s3cr+t/=&" into
			// "s3cr t/=&".
			name:       "special secret sent without URL-encoding",
			auth:       fositeRawBasic{id: url.QueryEscape(fositeSpecialID), secret: fositeSpecialSecret},
			user:       srv.userAssertion(fositeSpecialID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			// Unencoded, the ':' in the id ends the user-id part of the
			// Basic credentials early: an unknown client.
			name:       "special client id sent without URL-encoding",
			auth:       fositeRawBasic{id: fositeSpecialID, secret: url.QueryEscape(fositeSpecialSecret)},
			user:       srv.userAssertion(fositeSpecialID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			name:       "client without the jwt-bearer grant",
			auth:       oauth.SecretAuth{ClientID: fositeCCOnlyID, Secret: fositeCCOnlySecret},
			user:       srv.userAssertion(fositeCCOnlyID),
			wantStatus: http.StatusBadRequest, wantCode: oauth.CodeUnauthorizedClient,
		},
		{
			name:       "client assertion signed with an unregistered key",
			auth:       withClient(func(a *oauth.Assertion) { a.Key = srv.Keys.rogue }),
			user:       srv.userAssertion(fositePKJWTID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			name:       "client assertion for another audience",
			auth:       withClient(func(a *oauth.Assertion) { a.Audience = []string{"https://idcs.example.com/"} }),
			user:       srv.userAssertion(fositePKJWTID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
		{
			name:       "client assertion whose sub is not the client",
			auth:       withClient(func(a *oauth.Assertion) { a.Subject = fositeUser }),
			user:       srv.userAssertion(fositePKJWTID),
			wantStatus: http.StatusUnauthorized, wantCode: oauth.CodeInvalidClient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := srv.client(tt.auth, fositeNow())
			var err error
			if tt.user != nil {
				_, err = c.JWTBearer(context.Background(), tt.user, tt.scopes)
			} else {
				_, err = c.ClientCredentials(context.Background(), tt.scopes)
			}
			oe := fositeCheckError(t, err, tt.wantStatus, tt.wantCode)
			t.Logf("fosite: %v", oe)
		})
	}
}

// TestFositeReplay sends the exact bytes of a successful request again.
// fosite answers 400 "jti_known" (fosite.ErrJTIKnown), not invalid_grant:
// with Basic the user assertion's jti is the one found used (rfc7523
// handler), with private_key_jwt the client assertion's jti is found first
// (client authentication runs before the grant handler).
func TestFositeReplay(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	tests := []struct {
		name     string
		auth     oauth.ClientAuth
		clientID string
	}{
		{"basic", oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}, fositeBasicID},
		{"private_key_jwt", srv.clientAssertionAuth(), fositePKJWTID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c, rec := srv.client(tt.auth, fositeNow())
			user := srv.userAssertion(tt.clientID)
			if _, err := c.JWTBearer(ctx, user, []string{"read"}); err != nil {
				t.Fatalf("first JWTBearer: %v", err)
			}
			captured := rec.lastRequest(t)

			// tokd itself never replays: a second call signs fresh jtis.
			if _, err := c.JWTBearer(ctx, user, []string{"read"}); err != nil {
				t.Fatalf("second JWTBearer with fresh assertions: %v", err)
			}
			if rec.lastRequest(t) == captured {
				t.Fatal("the client sent the same body twice")
			}

			rec.setReplay(captured)
			_, err := c.JWTBearer(ctx, user, []string{"read"})
			oe := fositeCheckError(t, err, http.StatusBadRequest, "jti_known")
			t.Logf("fosite: %v", oe)
		})
	}
}

// TestFositeClientClockAhead documents how fosite v0.49.0 treats a client
// whose clock leads the server's by a minute. The user assertion's iat is
// not checked against the future (go-jose path), but a client assertion
// issued in the future fails in fosite's golang-jwt path with "Token used
// before issued", which fosite does not map to an RFC 6749 error: it answers
// HTTP 500 {"error":"error"}, so tokd classifies it as retryable although
// no retry can succeed while the clock leads (Assertion.Sign sets iat = now
// exactly, with no backdating).
func TestFositeClientClockAhead(t *testing.T) {
	t.Parallel()
	srv := newFositeServer(t)
	ahead := fositeNow().Add(time.Minute)

	c, _ := srv.client(oauth.SecretAuth{ClientID: fositeBasicID, Secret: fositeBasicSecret}, ahead)
	if _, err := c.JWTBearer(context.Background(), srv.userAssertion(fositeBasicID), []string{"read"}); err != nil {
		t.Errorf("Basic client, user assertion issued 1 min ahead: %v", err)
	}

	c, _ = srv.client(srv.clientAssertionAuth(), ahead)
	_, err := c.JWTBearer(context.Background(), srv.userAssertion(fositePKJWTID), []string{"read"})
	var oe *oauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("private_key_jwt client 1 min ahead: got %v, want an *oauth.Error", err)
	}
	t.Logf("fosite: %v", oe)
	want := oauth.Error{StatusCode: http.StatusInternalServerError, Code: "error", Retryable: true}
	if diff := cmp.Diff(want, *oe, cmpopts.IgnoreFields(oauth.Error{}, "Description", "Err")); diff != "" {
		t.Errorf("fosite's answer changed (-want +got):\n%s", diff)
	}
}
