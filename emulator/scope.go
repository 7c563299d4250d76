package emulator

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scopeGroup is the part of a request's scope that one resource server owns.
type scopeGroup struct {
	server *ResourceServer // nil: the identity domain
	scopes []string        // fully qualified, as requested, without modifiers
}

// key names the resource server in a refresh grant: "" for the identity domain.
func (g *scopeGroup) key() string {
	if g.server == nil {
		return ""
	}
	return g.server.Audience
}

// scopeRequest is a parsed scope parameter.
type scopeRequest struct {
	groups  []*scopeGroup // in the order their first scope appears
	offline bool
	multi   bool
	expiry  time.Duration // 0: no urn:opc:resource:expiry
}

// parseScope resolves the scope parameter for client a. The returned
// error is the invalid_scope description.
func (e *Emulator) parseScope(scope string, a *app) (*scopeRequest, error) {
	req := &scopeRequest{}
	byKey := make(map[string]*scopeGroup)
	seen := make(map[string]bool)
	consumerAll := false
	e.mu.Lock()
	servers := e.servers
	defer e.mu.Unlock()
	for _, s := range strings.Fields(scope) {
		if seen[s] {
			continue
		}
		seen[s] = true
		var server *ResourceServer
		switch {
		case s == ScopeOfflineAccess:
			req.offline = true
			continue
		case s == ScopeMultiResource:
			req.multi = true
			continue
		case strings.HasPrefix(s, ScopeExpiryPrefix):
			secs, err := strconv.ParseInt(strings.TrimPrefix(s, ScopeExpiryPrefix), 10, 64)
			if err != nil || secs <= 0 || secs > int64(MaxAccessTokenLifetime/time.Second) {
				return nil, fmt.Errorf("scope %q: the expiry must be a positive number of seconds", s)
			}
			req.expiry = time.Duration(secs) * time.Second
			continue
		case s == ScopeMyScopes:
		case s == ScopeConsumerAll:
			consumerAll = true
			if !a.allowed[s] {
				return nil, fmt.Errorf("scope %q is not granted to client %q", s, a.ClientID)
			}
		case strings.HasPrefix(s, ScopeRolePrefix):
			role, err := url.PathUnescape(strings.TrimPrefix(s, ScopeRolePrefix))
			if err != nil || role == "" {
				return nil, fmt.Errorf("scope %q: the role name must be URL-encoded", s)
			}
			if !a.allowed[ScopeRolePrefix+role] {
				return nil, fmt.Errorf("scope %q: role %q is not granted to client %q", s, role, a.ClientID)
			}
		default:
			server = findServer(servers, s)
			if server == nil {
				return nil, fmt.Errorf("scope %q is unknown to the identity domain", s)
			}
			if !a.allowed[s] {
				return nil, fmt.Errorf("scope %q is not granted to client %q", s, a.ClientID)
			}
		}
		g := &scopeGroup{server: server}
		if prev := byKey[g.key()]; prev != nil {
			g = prev
		} else {
			byKey[g.key()] = g
			req.groups = append(req.groups, g)
		}
		g.scopes = append(g.scopes, s)
	}
	if len(req.groups) == 0 {
		return nil, errors.New("no scope requested")
	}
	if consumerAll {
		n := 0
		for _, g := range req.groups {
			n += len(g.scopes)
		}
		if n > 1 {
			return nil, fmt.Errorf("scope %s cannot be combined with other scopes", ScopeConsumerAll)
		}
	}
	if len(req.groups) > 1 && !req.multi {
		names := make([]string, len(req.groups))
		for i, g := range req.groups {
			names[i] = g.audienceName()
		}
		return nil, fmt.Errorf("the scopes belong to multiple resource servers (%s): "+
			"add the scope %s to receive one token per resource server",
			strings.Join(names, ", "), ScopeMultiResource)
	}
	return req, nil
}

func (g *scopeGroup) audienceName() string {
	if g.server == nil {
		return "the identity domain"
	}
	return g.server.Audience
}

// findServer returns the resource server owning the fully qualified scope
// s, preferring the longest audience.
func findServer(servers map[string]*ResourceServer, s string) *ResourceServer {
	var best *ResourceServer
	for aud, rs := range servers {
		if !strings.HasPrefix(s, aud) || !slices.Contains(rs.Scopes, strings.TrimPrefix(s, aud)) {
			continue
		}
		if best == nil || len(aud) > len(best.Audience) {
			best = rs
		}
	}
	return best
}
