package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/BurntSushi/toml"
)

var profileNamePattern = regexp.MustCompile(profileNamePatternString)

type validator struct {
	r     *report
	files *fileReader
	// claimedGit and claimedDocker map a git URL or docker registry to the
	// profile that claimed it first.
	claimedGit    map[string]string
	claimedDocker map[string]string
}

func (v *validator) config(c *Config) {
	if c.Socket != "" {
		if msg := absPathProblem(c.Socket); msg != "" {
			v.r.problem("socket", "%s", msg)
		} else if c.Socket = filepath.Clean(c.Socket); len(c.Socket) > maxSocketPathLen {
			v.r.problem("socket", "is %d bytes long; a Unix socket path can have at most %d", len(c.Socket), maxSocketPathLen)
		}
	}
	if c.StateDir != "" {
		if msg := absPathProblem(c.StateDir); msg != "" {
			v.r.problem("state_dir", "%s", msg)
		} else {
			c.StateDir = filepath.Clean(c.StateDir)
		}
	}
	if c.MetricsAddress != "" {
		if msg := hostPortProblem(c.MetricsAddress); msg != "" {
			v.r.problem("metrics_address", "%s", msg)
		}
	}
	if len(c.Profiles) == 0 && !v.r.hasProblemUnder("profiles") {
		v.r.problem("profiles", "at least one profile is needed, like [profiles.ci]")
	}
	v.claimedGit = map[string]string{}
	v.claimedDocker = map[string]string{}
	for _, name := range c.ProfileNames() {
		v.profile(c.Profiles[name])
	}
}

func absPathProblem(p string) string {
	if strings.ContainsRune(p, 0) {
		return "must not contain a NUL byte"
	}
	if !filepath.IsAbs(p) {
		return fmt.Sprintf("must be an absolute path, not %q", p)
	}
	return ""
}

func hostPortProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("must be host:port, like 127.0.0.1:9464 (%v)", err)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || r == '/' }) {
		return fmt.Sprintf("has an invalid host %q", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("must have a numeric port from 1 to 65535, not %q", port)
	}
	return ""
}

// profileChecker validates one profile.
type profileChecker struct {
	*validator
	p    *Profile
	base toml.Key
}

func (pc *profileChecker) key(parts ...string) string { return subKey(pc.base, parts...).String() }

func (pc *profileChecker) problem(field, format string, args ...any) {
	pc.r.problem(pc.key(strings.Split(field, ".")...), format, args...)
}

// overflowID is the kernel's default overflowuid and overflowgid.
const overflowID = 65534

func (v *validator) profile(p *Profile) {
	pc := &profileChecker{validator: v, p: p, base: toml.Key{"profiles", p.Name}}
	if !profileNamePattern.MatchString(p.Name) {
		v.r.problem(pc.key(), "invalid profile name: it must start with a letter or digit, then have at most 63 letters, digits, '.', '_' or '-' (it appears in URLs and metric labels)")
	}

	// grant stays empty when grant_type is invalid: the checks that depend
	// on it then stay silent.
	grant := ""
	switch p.GrantType {
	case "":
		p.GrantType = GrantJWTBearer
		grant = GrantJWTBearer
	case GrantJWTBearer, GrantClientCredentials, GrantImport:
		grant = p.GrantType
	default:
		pc.problem("grant_type", "must be %q, %q or %q, not %q", GrantJWTBearer, GrantClientCredentials, GrantImport, p.GrantType)
	}

	// 65534 is the kernel's overflow id: a caller in another user
	// namespace whose uid or gid is not mapped into tokd's appears as it,
	// so naming it admits every such caller at once.
	if slices.Contains(p.AllowedUIDs, overflowID) {
		v.r.warn(pc.key("allowed_uids"), "holds %d, the overflow uid: it admits every caller from another user namespace whose uid is not mapped into tokd's (often nobody)", overflowID)
	}
	if slices.Contains(p.AllowedGIDs, overflowID) {
		v.r.warn(pc.key("allowed_gids"), "holds %d, the overflow gid: it admits every caller from another user namespace whose groups are not mapped into tokd's (often nogroup)", overflowID)
	}

	hasSecret, hasKey := p.ClientSecretFile != "", p.ClientKeyFile != ""
	clientAuth := hasSecret || hasKey
	needAuth := grant == GrantJWTBearer || grant == GrantClientCredentials || (grant == GrantImport && p.RefreshToken)

	pc.urls(grant != GrantImport || clientAuth || p.RefreshToken)

	// Client authentication.
	switch {
	case hasSecret && hasKey:
		pc.problem("client_key_file", "cannot be combined with client_secret_file: set one of them")
	case !clientAuth && needAuth:
		why := fmt.Sprintf("grant_type = %q", grant)
		if grant == GrantImport {
			why = "refreshing an imported token (refresh_token = true)"
		}
		pc.problem("client_secret_file", "required for %s, unless client_key_file is set (client assertion)", why)
	}
	if hasKey && p.ClientKeyID == "" && p.ClientCertFile == "" {
		pc.problem("client_key_id", "required with client_key_file, unless client_cert_file is set (sent as x5t)")
	}
	if !hasKey {
		if p.ClientKeyID != "" {
			pc.problem("client_key_id", "only used with client_key_file")
		}
		if p.ClientCertFile != "" {
			pc.problem("client_cert_file", "only used with client_key_file")
		}
	}
	if p.ClientID == "" {
		if grant == GrantJWTBearer || grant == GrantClientCredentials {
			pc.problem("client_id", "required for grant_type = %q", grant)
		} else if clientAuth {
			pc.problem("client_id", "required with client authentication")
		}
	} else if msg := tokenProblem(p.ClientID); msg != "" {
		pc.problem("client_id", "%s", msg)
	}
	if p.ClientKeyID != "" {
		if msg := textProblem(p.ClientKeyID); msg != "" {
			pc.problem("client_key_id", "%s", msg)
		}
	}

	if p.RefreshToken && grant == GrantClientCredentials {
		pc.problem("refresh_token", "the client_credentials grant issues no refresh token (RFC 6749 §4.4.3): remove refresh_token or use another grant_type")
	}

	pc.assertion(grant)

	for _, sp := range scopeProblems(p.Scopes, originOf(p.DomainURL)) {
		pc.problem("scopes", "%s", sp)
	}

	pc.git()
	pc.docker()
	pc.readFiles()
}

// urls validates domain_url and token_url and fills in token_url;
// needed tells whether the profile ever talks to the token endpoint.
func (pc *profileChecker) urls(needed bool) {
	p := pc.p
	domainOK := false
	if p.DomainURL != "" {
		u, msg := endpointURL(p.DomainURL)
		if msg != "" {
			pc.problem("domain_url", "%s", msg)
		} else {
			u.Path = strings.TrimRight(u.Path, "/")
			u.RawPath = strings.TrimRight(u.RawPath, "/")
			p.DomainURL = u.String()
			domainOK = true
		}
	}
	if p.TokenURL != "" {
		u, msg := endpointURL(p.TokenURL)
		if msg != "" {
			pc.problem("token_url", "%s", msg)
		} else {
			p.TokenURL = u.String()
		}
		return
	}
	if domainOK {
		p.TokenURL = p.DomainURL + DefaultTokenPath
		return
	}
	if p.DomainURL == "" && needed {
		pc.problem("domain_url", "required (or token_url), like \"https://idcs-0123.identity.oraclecloud.com\"")
	}
}

// endpointURL parses an identity domain or token endpoint URL.
func endpointURL(s string) (*url.URL, string) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, "is not a valid URL: " + strings.TrimPrefix(err.Error(), "parse ")
	}
	if u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Sprintf("must be an absolute https URL, like \"https://idcs-0123.identity.oraclecloud.com\", not %q", s)
	}
	if u.User != nil {
		return nil, "must not contain a user name or password"
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, "must not have a query"
	}
	if u.Fragment != "" || strings.HasSuffix(s, "#") {
		return nil, "must not have a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, "must use https; http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1)"
		}
	default:
		return nil, fmt.Sprintf("must use https, not %q", u.Scheme)
	}
	u.Host = strings.ToLower(u.Host)
	return u, ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// originOf returns scheme://host of a URL, lower-cased, or "" when it has none.
func originOf(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// assertion validates [assertion] and fills in its defaults.
func (pc *profileChecker) assertion(grant string) {
	p, a := pc.p, pc.p.Assertion
	if grant == "" {
		return // invalid grant_type
	}
	if grant != GrantJWTBearer {
		if a != nil {
			pc.problem("assertion", "only used with grant_type = %q", GrantJWTBearer)
		}
		return
	}
	if a == nil {
		pc.problem("assertion", "required for grant_type = %q: add [%s] with subject, key_file, and key_id or cert_file", GrantJWTBearer, pc.key("assertion"))
		return
	}
	if a.Subject == "" {
		pc.problem("assertion.subject", "required: the user the token is for")
	} else if msg := textProblem(a.Subject); msg != "" {
		pc.problem("assertion.subject", "%s", msg)
	}
	if a.KeyFile == "" {
		pc.problem("assertion.key_file", "required: the private key that signs the user assertion")
	}
	if a.KeyID == "" && a.CertFile == "" {
		pc.problem("assertion.key_id", "required (the alias of the certificate in the app), unless cert_file is set (sent as x5t)")
	} else if a.KeyID != "" {
		if msg := textProblem(a.KeyID); msg != "" {
			pc.problem("assertion.key_id", "%s", msg)
		}
	}
	switch {
	case a.Audience == nil && p.DomainURL == "":
		pc.problem("assertion.audience", "required when domain_url is not set")
	case a.Audience == nil:
		a.Audience = []string{p.DomainURL + "/", OracleIdentityAudience}
	case len(a.Audience) == 0:
		pc.problem("assertion.audience", "must list at least one audience; leave it out for the default")
	default:
		for i, aud := range a.Audience {
			if msg := tokenProblem(aud); msg != "" {
				pc.problem("assertion.audience", "item %d %s", i+1, msg)
			}
		}
	}
}

func (pc *profileChecker) git() {
	g := pc.p.Git
	if g == nil {
		return
	}
	if g.Username == "" {
		g.Username = DefaultGitUsername
	} else if msg := textProblem(g.Username); msg != "" {
		pc.problem("git.username", "%s", msg)
	}
	if len(g.URLs) == 0 {
		pc.problem("git.urls", "at least one URL is needed, like \"https://git.example.com/team/\"")
	}
	for i, s := range g.URLs {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			pc.problem("git.urls", "item %d is not a valid URL: %s", i+1, strings.TrimPrefix(err.Error(), "parse "))
			continue
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
			pc.problem("git.urls", "item %d (%q) must be an absolute http or https URL with a host", i+1, s)
			continue
		case u.User != nil:
			pc.problem("git.urls", "item %d must not contain a user name or password", i+1)
			continue
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			pc.problem("git.urls", "item %d (%q) must not have a query or fragment", i+1, s)
			continue
		}
		u.Host = strings.ToLower(u.Host)
		g.URLs[i] = u.String()
		if other, ok := pc.claimedGit[GitURLKey(g.URLs[i])]; ok {
			pc.problem("git.urls", "%s is also claimed by %s", g.URLs[i], other)
		} else {
			pc.claimedGit[GitURLKey(g.URLs[i])] = pc.key()
		}
	}
}

func (pc *profileChecker) docker() {
	d := pc.p.Docker
	if d == nil {
		return
	}
	if d.Username == "" {
		d.Username = DefaultDockerUsername
	} else if msg := textProblem(d.Username); msg != "" {
		pc.problem("docker.username", "%s", msg)
	}
	if len(d.Registries) == 0 {
		pc.problem("docker.registries", "at least one registry is needed, like \"registry.example.com\"")
	}
	for i, s := range d.Registries {
		reg, msg := registry(s)
		if msg != "" {
			pc.problem("docker.registries", "item %d (%q) %s", i+1, s, msg)
			continue
		}
		d.Registries[i] = reg
		if other, ok := pc.claimedDocker[reg]; ok {
			pc.problem("docker.registries", "%s is also claimed by %s", reg, other)
		} else {
			pc.claimedDocker[reg] = pc.key()
		}
	}
}

// registry normalises a docker registry to host[:port], lower case.
func registry(s string) (string, string) {
	const want = "must be host[:port], like \"registry.example.com\" or \"registry.example.com:5000\""
	hostport := s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "https" && scheme != "http" {
			return "", want
		}
		hostport = strings.TrimSuffix(s[i+3:], "/")
	}
	if hostport == "" || strings.ContainsAny(hostport, "/?#@ \t") {
		return "", want
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return "", want
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") && port == "" {
		host = host[1 : len(host)-1] // [::1] without a port
		if net.ParseIP(host) == nil {
			return "", want
		}
	}
	if !validHost(host) {
		return "", want
	}
	host = strings.ToLower(host)
	if port == "" && (host == "index.docker.io" || host == "registry-1.docker.io") {
		host = "docker.io" // Docker Hub, as credproto.DockerRegistry names it
	}
	if port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]", ""
		}
		return host, ""
	}
	return net.JoinHostPort(host, port), ""
}

// validHost reports whether host is a DNS name or an IP address.
func validHost(host string) bool {
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// textProblem checks a name: no control characters, no surrounding space.
func textProblem(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "must not contain control characters"
	}
	if strings.TrimSpace(s) != s {
		return "must not start or end with whitespace"
	}
	return ""
}

// tokenProblem checks an identifier: no whitespace or control characters.
func tokenProblem(s string) string {
	if s == "" {
		return "is empty"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "must not contain whitespace or control characters"
	}
	return ""
}
