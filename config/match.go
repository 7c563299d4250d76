package config

import (
	"net/url"
	"sort"
	"strings"
)

// GitMatch is a profile whose git.urls cover a request, and the URL that
// did.
type GitMatch struct {
	Profile *Profile
	URL     string
	pathLen int // length of URL's path, which ranks matches
}

// MatchGit returns the profiles whose git.urls cover rawURL
// (protocol://host[:port]/path as git describes a request), best first.
//
// Scheme, host and port must be equal (default ports made explicit). When
// the request has a path, a profile URL matches if its path is a prefix
// of the request's at a "/" boundary, and longer prefixes come first.
// When it has none (git sends a path only with credential.useHttpPath),
// every profile URL on that scheme, host and port matches, in profile
// name order: the caller decides what several matches mean.
func (c *Config) MatchGit(rawURL string) []GitMatch {
	req, ok := splitGitURL(rawURL)
	if !ok {
		return nil
	}
	var out []GitMatch
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		if p.Git == nil {
			continue
		}
		best, bestLen := "", -1
		for _, s := range p.Git.URLs {
			u, ok := splitGitURL(s)
			if !ok || u.origin != req.origin {
				continue
			}
			if req.path != "" && !pathPrefix(u.path, req.path) {
				continue
			}
			if len(u.path) > bestLen {
				best, bestLen = s, len(u.path)
			}
		}
		if best != "" {
			out = append(out, GitMatch{Profile: p, URL: best, pathLen: bestLen})
		}
	}
	if req.path != "" {
		sort.SliceStable(out, func(i, j int) bool { return out[i].pathLen > out[j].pathLen })
	}
	return out
}

// GitURLKey is the form in which two git URLs are the same: scheme, host
// and explicit port, and path.
func GitURLKey(s string) string {
	u, ok := splitGitURL(s)
	if !ok {
		return s
	}
	return u.origin + "/" + u.path
}

// MatchDocker returns the profile whose docker.registries name registry
// (host[:port], lower case), or nil.
func (c *Config) MatchDocker(registry string) *Profile {
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		if p.Docker == nil {
			continue
		}
		for _, r := range p.Docker.Registries {
			if r == registry {
				return p
			}
		}
	}
	return nil
}

type gitURL struct {
	origin string // scheme://host:port
	path   string // without the leading "/"
}

func splitGitURL(s string) (gitURL, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return gitURL{}, false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return gitURL{origin: u.Scheme + "://" + host + ":" + port, path: strings.TrimPrefix(u.Path, "/")}, true
}

// pathPrefix reports whether prefix covers path: equal, or a prefix
// ending at a "/" boundary.
func pathPrefix(prefix, path string) bool {
	if prefix == "" || prefix == path {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
