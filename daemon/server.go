package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/token"
)

// Tokens is what the socket API needs of the token cache.
type Tokens interface {
	Get(ctx context.Context, profile string) (*oauth.Token, error)
	Refresh(ctx context.Context, profile string) (*oauth.Token, error)
	Forget(profile string) error
	// ForgetRefused forgets the token only if its access token is
	// refused, and reports whether it did.
	ForgetRefused(profile, refused string) (bool, error)
	Import(profile string, tok *oauth.Token) error
	Status() []cache.ProfileStatus
}

// heldTokens is implemented by a Tokens that can say, without waiting,
// whether it holds a servable token (*cache.Cache does: Held). The socket
// server's fast path answers from it; without it every request takes
// Get's path.
type heldTokens interface {
	Held(profile string) (*token.Token, bool)
}

// Access says who may use one profile's token besides root and the
// daemon's own user.
type Access struct {
	UIDs []uint32
	GIDs []uint32
	// Also, when set, must admit the caller too: while a reload is on its
	// way, a profile is served only to callers that both configurations
	// admit, since its token may still be the one the old settings
	// fetched.
	Also *Access
}

// admits reports whether cred is among the UIDs or, by its primary or
// supplementary groups, the GIDs. The caller's supplementary groups are
// read only when they decide it.
func (a *Access) admits(cred *PeerCred) bool {
	if slices.Contains(a.UIDs, cred.UID) || slices.Contains(a.GIDs, cred.GID) {
		return true
	}
	if len(a.GIDs) == 0 {
		return false
	}
	for _, g := range cred.supplementaryGroups() {
		if slices.Contains(a.GIDs, g) {
			return true
		}
	}
	return false
}

// Policy maps each profile to its Access. A profile missing from the
// policy does not exist as far as callers are concerned.
type Policy map[string]Access

// server answers the socket API.
type server struct {
	tokens Tokens
	policy atomic.Pointer[Policy] // swapped whole on reload
	// config is the configuration serving, for the git and docker routes
	// that match URLs and registries; swapped whole on reload.
	config  atomic.Pointer[config.Config]
	selfUID uint32
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics
	// getTimeout bounds how long a request waits for a token fetch.
	getTimeout time.Duration
	// heldTokens is tokens as a heldTokens; nil when it is not one.
	heldTokens heldTokens
	// served holds, for each profile the fast path served under the
	// current configuration, its tokd_token_requests_total{result="ok"}
	// counter and the last answer it served: the fast path then counts
	// without the metrics' lock or a hash of labels, and encodes an
	// answer once per token rather than once per request. Replaced
	// (emptied) whenever the configuration changes; filled by
	// servedProfile.
	served atomic.Pointer[map[string]*servedProfile]
	// denials limits the log lines of refused requests per uid.
	denials denyLog
}

func newServer(tokens Tokens, cfg *config.Config, selfUID uint32, now func() time.Time, log *slog.Logger, m *metrics) *server {
	s := &server{tokens: tokens, selfUID: selfUID, now: now, log: log, metrics: m, getTimeout: 25 * time.Second}
	s.heldTokens, _ = tokens.(heldTokens)
	s.setConfig(cfg)
	return s
}

// socketServer returns the HTTP server of the socket API.
func (s *server) socketServer() *httpServer {
	return newHTTPServer(s, s.log)
}

// setConfig serves cfg: its profiles' access and its git and docker
// settings.
func (s *server) setConfig(cfg *config.Config) {
	p := policy(cfg)
	s.policy.Store(&p)
	s.config.Store(cfg)
	s.served.Store(&map[string]*servedProfile{})
}

// narrowTo admits only the profiles that both the serving configuration
// and next have, each to the callers that both admit: the first step of
// a reload, so that no request reaches a profile the cache is about to
// drop or does not have yet, and no caller gets a token that
// configuration does not give it (next's access with the old token,
// which the cache drops only later if the profile's settings changed;
// or the old access once next revokes it).
func (s *server) narrowTo(next *config.Config) {
	cur := *s.policy.Load()
	p := make(Policy, len(cur))
	for name, acc := range policy(next) {
		if old, ok := cur[name]; ok {
			acc.Also = &old
			p[name] = acc
		}
	}
	s.policy.Store(&p)
	s.served.Store(&map[string]*servedProfile{})
}

// handler returns the API's route table behind the checks every request
// passes.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/token/{profile}", s.tokenHandler(s.getToken))
	mux.HandleFunc("POST /v1/token/{profile}/refresh", s.tokenHandler(s.refreshToken))
	mux.HandleFunc("POST /v1/token/{profile}/import", s.tokenHandler(s.importToken))
	mux.HandleFunc("DELETE /v1/token/{profile}", s.profileHandler(s.forgetToken))
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/metrics", s.serveMetrics)
	mux.HandleFunc("GET /v1/git", s.gitCredential)
	mux.HandleFunc("DELETE /v1/git", s.gitErase)
	mux.HandleFunc("POST /v1/git/refused", s.gitRefused)
	mux.HandleFunc("GET /v1/docker", s.dockerCredential)
	mux.HandleFunc("GET /v1/docker/list", s.dockerList)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such API path: %s %s", r.Method, r.URL.Path))
	})
	return s.guard(mux)
}

// guard sets the version header, refuses browsers and callers whose
// credentials are unknown, and bounds request bodies.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(apitype.VersionHeader, apitype.Version)
		w.Header().Set("Cache-Control", "no-store")
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
			writeError(w, http.StatusForbidden, "requests from browsers (with Origin or Referer) are refused")
			return
		}
		if v := r.Header.Get(apitype.VersionHeader); v != "" && v != apitype.Version {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("this tokd speaks API version %s, the client %s", apitype.Version, v))
			return
		}
		// ServeMux would redirect a path it cleans, with an HTML body;
		// no client of this API sends one.
		if p := r.URL.Path; !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such API path: %s %s", r.Method, p))
			return
		}
		if _, ok := peerCredFrom(r.Context()); !ok {
			writeError(w, http.StatusForbidden, "cannot identify the caller (SO_PEERCRED)")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, apitype.MaxRequestBody)
		next.ServeHTTP(w, r)
	})
}

// privileged reports whether cred may see every profile: root and the
// daemon's own user.
func (s *server) privileged(cred *PeerCred) bool {
	return cred.UID == 0 || cred.UID == s.selfUID
}

// allowed reports whether cred may use the profile's token.
func (s *server) allowed(cred *PeerCred, profile string) bool {
	acc, ok := (*s.policy.Load())[profile]
	if !ok {
		return false
	}
	if s.privileged(cred) {
		return true
	}
	for a := &acc; a != nil; a = a.Also {
		if !a.admits(cred) {
			return false
		}
	}
	return true
}

// profileHandler authorises the caller for the path's profile before h
// runs. A caller who may not use a profile learns nothing about it, not
// even whether it exists; root and the daemon's user are told which.
func (s *server) profileHandler(h func(w http.ResponseWriter, r *http.Request, profile string)) http.HandlerFunc {
	return s.authorised(h, false)
}

// tokenHandler is profileHandler for the routes that serve a token, whose
// refusals count in tokd_token_requests_total.
func (s *server) tokenHandler(h func(w http.ResponseWriter, r *http.Request, profile string)) http.HandlerFunc {
	return s.authorised(h, true)
}

// authorised runs h once the caller may use the path's profile; counted
// says whether a refusal counts in tokd_token_requests_total.
func (s *server) authorised(h func(w http.ResponseWriter, r *http.Request, profile string), counted bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		profile := r.PathValue("profile")
		cred, _ := peerCredFrom(r.Context())
		if !s.allowed(cred, profile) {
			s.deny(w, cred, profile, counted)
			return
		}
		h(w, r, profile)
	}
}

// deny answers a caller who may not use the profile: 403 whether or not
// it exists, so that the caller learns neither; root and the daemon's
// user, who may use every profile, are told it does not exist (404).
// counted says whether the refusal counts in tokd_token_requests_total.
// A uid's refusals are logged once a minute at most (denyLog).
func (s *server) deny(w http.ResponseWriter, cred *PeerCred, profile string, counted bool) {
	status, msg := http.StatusForbidden, fmt.Sprintf("profile %q: no such profile, or uid %d may not use it", profile, cred.UID)
	if _, exists := (*s.policy.Load())[profile]; !exists && s.privileged(cred) {
		status, msg = http.StatusNotFound, fmt.Sprintf("no profile %q", profile)
	} else {
		if ok, suppressed := s.denials.admit(cred.UID, s.now()); ok {
			s.log.Info("request denied", "profile", profile, "uid", cred.UID, "gid", cred.GID, "pid", cred.PID,
				"not_logged_since", suppressed)
		}
	}
	if counted {
		s.metrics.tokenRequest(profile, statusResult(status))
	}
	writeError(w, status, msg)
}

// stillAllowed reports whether the request's caller may still use the
// profile once its token is in hand, or its body read. A reload while the
// request waited may have removed the profile or the caller's access to
// it: the caller is then answered as deny answers one who never had
// access, and neither gets the token it waited for nor changes it.
func (s *server) stillAllowed(w http.ResponseWriter, r *http.Request, profile string) bool {
	cred, _ := peerCredFrom(r.Context())
	if s.allowed(cred, profile) {
		return true
	}
	s.deny(w, cred, profile, true)
	return false
}

func (s *server) getToken(w http.ResponseWriter, r *http.Request, profile string) {
	// A held token needs no deadline: a timer per request is for the
	// requests that wait for a fetch.
	tok, ok := s.held(profile)
	var err error
	if !ok {
		ctx, cancel := context.WithTimeout(r.Context(), s.getTimeout)
		defer cancel()
		tok, err = s.tokens.Get(ctx, profile)
	}
	if !s.stillAllowed(w, r, profile) {
		return
	}
	s.writeToken(w, profile, tok, err)
}

// held returns the profile's token if the cache holds one to serve now.
func (s *server) held(profile string) (*token.Token, bool) {
	if s.heldTokens == nil {
		return nil, false
	}
	return s.heldTokens.Held(profile)
}

// servedProfile is what the fast path keeps of a profile it serves.
type servedProfile struct {
	// ok is tokd_token_requests_total{profile,result="ok"}.
	ok prometheus.Counter
	// answer is the body of the last token answer, or nil.
	answer atomic.Pointer[tokenAnswer]
}

// tokenAnswer is the JSON answer for one token.
type tokenAnswer struct {
	accessToken, tokenType string
	expiry                 time.Time
	body                   []byte // the JSON and its newline
}

// matches reports whether a is the answer for tok.
func (a *tokenAnswer) matches(tok *token.Token) bool {
	return a.accessToken == tok.AccessToken && a.tokenType == tok.TokenType && a.expiry.Equal(tok.Expiry)
}

// servedProfile returns what the fast path keeps of profile, or nil when
// the metrics do not know the profile (the slow path then counts it, as
// profile ""); the profile must be one the policy admits.
func (s *server) servedProfile(profile string) *servedProfile {
	served := s.served.Load()
	if sp, ok := (*served)[profile]; ok {
		return sp
	}
	m := s.metrics
	m.mu.Lock()
	if !m.profiles[profile] {
		m.mu.Unlock()
		return nil
	}
	sp := &servedProfile{ok: m.tokenRequests.WithLabelValues(profile, resultOK)}
	m.mu.Unlock()
	next := make(map[string]*servedProfile, len(*served)+1)
	for k, v := range *served {
		next[k] = v
	}
	next[profile] = sp
	// Lost to a concurrent reload (which emptied the map) or to another
	// profile's first request, this is only done again next time.
	s.served.CompareAndSwap(served, &next)
	return sp
}

func (s *server) refreshToken(w http.ResponseWriter, r *http.Request, profile string) {
	ctx, cancel := context.WithTimeout(r.Context(), s.getTimeout)
	defer cancel()
	tok, err := s.tokens.Refresh(ctx, profile)
	if !s.stillAllowed(w, r, profile) {
		return
	}
	s.writeToken(w, profile, tok, err)
}

func (s *server) forgetToken(w http.ResponseWriter, _ *http.Request, profile string) {
	if err := s.tokens.Forget(profile); err != nil {
		s.writeCacheError(w, profile, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) importToken(w http.ResponseWriter, r *http.Request, profile string) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		s.metrics.tokenRequest(profile, resultError)
		writeBodyError(w, "token file", err)
		return
	}
	tok, err := oauth.ParseTokFile(data, s.now())
	if err != nil {
		s.metrics.tokenRequest(profile, resultError)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Sending the file may take the body's read timeout, and a reload
	// meanwhile may have taken the caller's access away.
	if !s.stillAllowed(w, r, profile) {
		return
	}
	if err := s.tokens.Import(profile, tok); err != nil {
		s.writeToken(w, profile, nil, err)
		return
	}
	s.log.Info("token imported", "profile", profile, "expires", tok.Expiry.UTC().Format(time.RFC3339), "refresh_token", tok.RefreshToken != "")
	s.writeToken(w, profile, tok, nil)
}

// serveMetrics serves the Prometheus metrics to root and the daemon's
// user only: they name every profile.
func (s *server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	cred, _ := peerCredFrom(r.Context())
	if !s.privileged(cred) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("the metrics name every profile: only root and uid %d may read them", s.selfUID))
		return
	}
	s.metrics.handler.ServeHTTP(w, r)
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	cred, _ := peerCredFrom(r.Context())
	st := apitype.Status{Version: apitype.Version, Profiles: []apitype.ProfileStatus{}}
	for _, p := range s.tokens.Status() {
		if s.allowed(cred, p.Name) {
			st.Profiles = append(st.Profiles, toAPIStatus(p))
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func toAPIStatus(p cache.ProfileStatus) apitype.ProfileStatus {
	return apitype.ProfileStatus{
		Profile:      p.Name,
		State:        string(p.State),
		ExpiresAt:    timePtr(p.ExpiresAt),
		LastRefresh:  timePtr(p.LastRefresh),
		NextRefresh:  timePtr(p.NextRefresh),
		RefreshToken: p.HasRefreshToken,
		LastError:    p.LastError,
		LastErrorAt:  timePtr(p.LastErrorAt),
		StoreError:   p.StoreError,
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// writeToken answers a token request with tok, or with err, and counts
// it in tokd_token_requests_total.
func (s *server) writeToken(w http.ResponseWriter, profile string, tok *token.Token, err error) {
	s.metrics.tokenRequest(profile, tokenResult(err))
	if err != nil {
		s.writeCacheError(w, profile, err)
		return
	}
	writeJSON(w, http.StatusOK, apiToken(profile, tok))
}

func apiToken(profile string, tok *token.Token) apitype.Token {
	return apitype.Token{
		Profile:     profile,
		AccessToken: tok.AccessToken,
		TokenType:   tok.TokenType,
		ExpiresAt:   tok.Expiry.UTC(),
	}
}

// writeCacheError maps the cache's errors to statuses.
func (s *server) writeCacheError(w http.ResponseWriter, profile string, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, cache.ErrUnknownProfile):
		status = http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return // the caller has gone
	}
	// The cache's errors name the profile already; a caller's own deadline
	// does not.
	msg := err.Error()
	if !strings.HasPrefix(msg, "profile "+profile+":") {
		msg = fmt.Sprintf("profile %s: %s", profile, msg)
	}
	writeError(w, status, msg)
}

// writeBodyError answers a request whose body, what, could not be read:
// 413 when it is larger than apitype.MaxRequestBody, 408 when it did not
// arrive in time, 400 when it is malformed or cut short. The message
// never quotes the body, which may hold a secret.
func writeBodyError(w http.ResponseWriter, what string, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than %d bytes", what, apitype.MaxRequestBody))
	case isTimeout(err):
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf("%s not received in time", what))
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s cut short or malformed", what))
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apitype.ErrorResponse{Error: msg})
}

// writeJSON writes v with an explicit Content-Length, so that tokctl's
// minimal HTTP reader never meets chunked encoding.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"encoding the answer failed"}`)
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
