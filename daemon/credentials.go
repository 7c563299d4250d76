package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/credproto"
)

// The credential-helper routes: git and docker name a URL or a registry,
// and the daemon finds the profile for it among those the caller may use.
// A caller learns nothing of profiles it may not use: they do not match.

// gitProfile returns the profile whose git.urls best cover the request
// URL among those cred may use. With no path in the request (git sends
// one only with credential.useHttpPath) and several profiles on its host,
// it refuses to guess: the status is 409 and the message says why.
func (s *server) gitProfile(cred *PeerCred, requestURL string) (*config.GitMatch, int, string) {
	cfg := s.config.Load()
	if cfg == nil {
		return nil, http.StatusNotFound, "no configuration"
	}
	var matches []config.GitMatch
	for _, m := range cfg.MatchGit(requestURL) {
		if s.allowed(cred, m.Profile.Name) {
			matches = append(matches, m)
		}
	}
	switch {
	case len(matches) == 0:
		return nil, http.StatusNotFound, notCovered(requestURL)
	case len(matches) > 1 && withoutPath(requestURL):
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = m.Profile.Name
		}
		return nil, http.StatusConflict, fmt.Sprintf("profiles %s all cover %s and git sent no path to choose by",
			strings.Join(names, ", "), requestURL)
	}
	return &matches[0], 0, ""
}

// notCovered and notNamed are the 404 messages of the git and docker
// routes, for a URL or registry no profile the caller may use covers, at
// the request's start or after a reload took its access away.
func notCovered(requestURL string) string {
	return "no profile you may use covers " + requestURL
}

func notNamed(registry string) string {
	return "no profile you may use names registry " + registry
}

// withoutPath reports whether a request URL names only an origin.
func withoutPath(requestURL string) bool {
	u, err := url.Parse(requestURL)
	return err == nil && (u.Path == "" || u.Path == "/")
}

func (s *server) gitCredential(w http.ResponseWriter, r *http.Request) {
	cred, _ := peerCredFrom(r.Context())
	requestURL := r.URL.Query().Get("url")
	m, status, msg := s.gitProfile(cred, requestURL)
	if m == nil {
		s.metrics.tokenRequest("", statusResult(status))
		writeError(w, status, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.getTimeout)
	defer cancel()
	name := m.Profile.Name
	tok, err := s.tokens.Get(ctx, name)
	if !s.allowed(cred, name) {
		// A reload while the request waited took the profile or the
		// caller's access away: it covers nothing the caller may use.
		s.metrics.tokenRequest("", resultNotFound)
		writeError(w, http.StatusNotFound, notCovered(requestURL))
		return
	}
	s.metrics.tokenRequest(name, tokenResult(err))
	if err != nil {
		s.writeCacheError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, apitype.Credential{
		Token:     apiToken(name, tok),
		Username:  m.Profile.Git.Username,
		ServerURL: m.URL,
	})
}

// gitErase (DELETE /v1/git?url=URL) forgets the profile's token for URL
// whatever it is, so that the next request fetches a new one: tokctl
// before gitRefused compared the refused secret itself, then sent this.
func (s *server) gitErase(w http.ResponseWriter, r *http.Request) {
	s.gitForget(w, r, false)
}

// gitRefused (POST /v1/git/refused?url=URL, body apitype.GitRefusal)
// forgets the profile's token for URL only if it is the refused secret,
// comparing and forgetting in one step: git reports a refusal to every
// helper it has (another helper's password), and may report one late (a
// token tokd has already replaced).
func (s *server) gitRefused(w http.ResponseWriter, r *http.Request) {
	s.gitForget(w, r, true)
}

// gitForget serves gitErase, and gitRefused when refusal is set.
func (s *server) gitForget(w http.ResponseWriter, r *http.Request, refusal bool) {
	cred, _ := peerCredFrom(r.Context())
	requestURL := r.URL.Query().Get("url")
	m, status, msg := s.gitProfile(cred, requestURL)
	if m == nil {
		writeError(w, status, msg)
		return
	}
	var refused apitype.GitRefusal
	if refusal {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeBodyError(w, "request body", err)
			return
		}
		if err := decodeStrict(body, &refused); err != nil || refused.Refused == "" {
			writeError(w, http.StatusBadRequest, `the body must be {"refused": SECRET} with the secret the server refused`)
			return
		}
	}
	name := m.Profile.Name
	if !s.allowed(cred, name) {
		// A reload while the body arrived took the profile or the
		// caller's access away.
		writeError(w, http.StatusNotFound, notCovered(requestURL))
		return
	}
	var err error
	if !refusal {
		err = s.tokens.Forget(name)
	} else {
		var forgot bool
		forgot, err = s.tokens.ForgetRefused(name, refused.Refused)
		if err == nil && !forgot {
			s.log.Debug("a git server refused a secret that is not the profile's token; kept the token", "profile", name, "url", m.URL, "uid", cred.UID)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if err != nil {
		s.writeCacheError(w, name, err)
		return
	}
	s.log.Info("token refused by a git server; forgotten", "profile", name, "url", m.URL, "uid", cred.UID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) dockerCredential(w http.ResponseWriter, r *http.Request) {
	cred, _ := peerCredFrom(r.Context())
	server := r.URL.Query().Get("server")
	registry := credproto.DockerRegistry(server)
	cfg := s.config.Load()
	var p *config.Profile
	if cfg != nil {
		p = cfg.MatchDocker(registry)
	}
	if p == nil || !s.allowed(cred, p.Name) {
		s.metrics.tokenRequest("", resultNotFound)
		writeError(w, http.StatusNotFound, notNamed(registry))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.getTimeout)
	defer cancel()
	tok, err := s.tokens.Get(ctx, p.Name)
	if !s.allowed(cred, p.Name) {
		// A reload while the request waited took the profile or the
		// caller's access away: it names nothing the caller may use.
		s.metrics.tokenRequest("", resultNotFound)
		writeError(w, http.StatusNotFound, notNamed(registry))
		return
	}
	s.metrics.tokenRequest(p.Name, tokenResult(err))
	if err != nil {
		s.writeCacheError(w, p.Name, err)
		return
	}
	writeJSON(w, http.StatusOK, apitype.Credential{
		Token:     apiToken(p.Name, tok),
		Username:  p.Docker.Username,
		ServerURL: registry,
	})
}

func (s *server) dockerList(w http.ResponseWriter, r *http.Request) {
	cred, _ := peerCredFrom(r.Context())
	list := apitype.DockerList{}
	if cfg := s.config.Load(); cfg != nil {
		for _, name := range cfg.ProfileNames() {
			p := cfg.Profiles[name]
			if p.Docker == nil || !s.allowed(cred, name) {
				continue
			}
			for _, reg := range p.Docker.Registries {
				list[reg] = p.Docker.Username
			}
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// decodeStrict decodes the JSON object in body into v, refusing unknown
// fields and anything after the object. Its error never quotes the body,
// which may hold a secret.
func decodeStrict(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return errors.New("not the expected JSON object")
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}
