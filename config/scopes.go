package config

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Scopes with a meaning of their own in an OCI identity domain.
const (
	ScopeOfflineAccess      = "offline_access"
	ScopeOpenID             = "openid"
	ScopeMultiResource      = "urn:opc:resource:multiresourcescope"
	ScopeConsumerAll        = "urn:opc:resource:consumer::all"
	ScopeExpiryPrefix       = "urn:opc:resource:expiry="
	ScopeIdentityPrefix     = "urn:opc:idm:"
	identityDomainServer    = "the identity domain"
	tokenResponsesExplained = `OCI then answers one token per resource server ({"tokenResponses":[...]}), ` +
		`which tokd cannot serve as one token: use one profile per resource server`
)

// isModifier reports whether a scope changes the token without naming a
// resource server: offline_access, openid and urn:opc:resource:expiry=N.
func isModifier(scope string) bool {
	return scope == ScopeOfflineAccess || scope == ScopeOpenID || strings.HasPrefix(scope, ScopeExpiryPrefix)
}

// resourceServer returns the resource server a scope belongs to, or "" for
// a modifier or a scope whose server is unknown. domainOrigin is the
// identity domain's scheme://host, if known.
func resourceServer(scope, domainOrigin string) string {
	switch {
	case isModifier(scope), scope == ScopeConsumerAll:
		return ""
	case strings.HasPrefix(scope, ScopeIdentityPrefix):
		if domainOrigin != "" {
			return domainOrigin
		}
		return identityDomainServer
	}
	u, err := url.Parse(scope)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// scopeProblems returns what is wrong with a profile's scopes.
func scopeProblems(scopes []string, domainOrigin string) []string {
	var problems []string
	seen := map[string]bool{}
	servers := map[string]bool{}
	consumerAll, others := false, false
	for i, s := range scopes {
		switch {
		case s == "":
			problems = append(problems, fmt.Sprintf("item %d is empty", i+1))
			continue
		case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			problems = append(problems, fmt.Sprintf("item %d (%q) contains whitespace: list each scope as its own string", i+1, s))
			continue
		case seen[s]:
			problems = append(problems, fmt.Sprintf("%q is listed twice", s))
			continue
		case s == ScopeMultiResource:
			problems = append(problems, fmt.Sprintf("%q is not supported: %s", s, tokenResponsesExplained))
			continue
		}
		seen[s] = true
		if n, ok := strings.CutPrefix(s, ScopeExpiryPrefix); ok {
			if v, err := strconv.ParseUint(n, 10, 32); err != nil || v == 0 {
				problems = append(problems, fmt.Sprintf("%q must give the lifetime as a positive number of seconds, like %s3600", s, ScopeExpiryPrefix))
			}
		}
		switch {
		case s == ScopeConsumerAll:
			consumerAll = true
		case !isModifier(s):
			others = true
		}
		if rs := resourceServer(s, domainOrigin); rs != "" {
			servers[rs] = true
		}
	}
	if consumerAll && others {
		problems = append(problems, fmt.Sprintf("%q cannot be combined with other scopes (only with %s, %s or %sN)", ScopeConsumerAll, ScopeOfflineAccess, ScopeOpenID, ScopeExpiryPrefix))
	}
	if len(servers) > 1 {
		list := make([]string, 0, len(servers))
		for s := range servers {
			list = append(list, s)
		}
		sort.Strings(list)
		problems = append(problems, fmt.Sprintf("the scopes span %d resource servers (%s): the identity domain accepts that only with %s, and %s",
			len(list), strings.Join(list, ", "), ScopeMultiResource, tokenResponsesExplained))
	}
	return problems
}
