// Package credproto speaks the credential-helper protocols of the tools
// that call tokctl: git's credential helpers (git-credential(1)),
// kubectl's exec credential plugins (client.authentication.k8s.io), and
// docker's credential helpers (docker-credential-helpers). It links only
// the standard library's basics, since it runs in tokctl on every call:
// not fmt, and not encoding/json (its JSON is internal/jsonlite's,
// compared with encoding/json's by FuzzKubeAPIVersion and FuzzJSONOutput).
package credproto

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tokd/tokd/internal/errtext"
)

// MaxGitLine is git's own limit on one credential line (credential.c).
const MaxGitLine = 65535

// maxGitLines bounds the number of lines of one request.
const maxGitLines = 1024

// GitRequest is what git sends a helper on stdin.
type GitRequest struct {
	Protocol string
	Host     string // with ":port" when git has one
	Path     string // only with credential.useHttpPath
	Username string
	// Password and Credential are what git sends back on erase: the
	// credential the server refused (Credential with authtype, 2.46+).
	Password     string
	Credential   string
	Capabilities []string // capability[]: what git understands (2.46+)
	WWWAuth      []string // wwwauth[]: the server's challenges (2.41+)
}

// ParseGitRequest reads key=value lines up to a blank line or EOF.
// Unknown attributes are ignored, as git requires; an empty key[] value
// clears that attribute's list; a url attribute is split into its parts.
// Lines longer than MaxGitLine, lines without "=", and NUL bytes are
// errors.
func ParseGitRequest(r io.Reader) (*GitRequest, error) {
	req := &GitRequest{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxGitLine+1)
	for n := 0; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			break
		}
		if n >= maxGitLines {
			return nil, errors.New("credential request longer than " + strconv.Itoa(maxGitLines) + " lines")
		}
		if strings.IndexByte(line, 0) >= 0 {
			return nil, errors.New("credential request holds a NUL byte")
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, errors.New("credential line without '=': " + errtext.QuoteShort(line, 40))
		}
		switch key {
		case "protocol":
			req.Protocol = value
		case "host":
			req.Host = value
		case "path":
			req.Path = value
		case "username":
			req.Username = value
		case "password":
			req.Password = value
		case "credential":
			req.Credential = value
		case "url":
			if err := req.setURL(value); err != nil {
				return nil, err
			}
		case "capability[]":
			req.Capabilities = appendMulti(req.Capabilities, value)
		case "wwwauth[]":
			req.WWWAuth = appendMulti(req.WWWAuth, value)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errors.New("credential line longer than " + strconv.Itoa(MaxGitLine) + " bytes")
		}
		return nil, &readError{err}
	}
	return req, nil
}

// appendMulti adds a value of a multi-valued attribute (key[]) to list;
// an empty value clears the list, as git-credential(1) says.
func appendMulti(list []string, value string) []string {
	if value == "" {
		return nil
	}
	return append(list, value)
}

// readError is a failure to read the request, wrapping the reader's error.
type readError struct{ err error }

func (e *readError) Error() string { return "reading the credential request: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// setURL reads a url attribute as git's credential_from_url does: the
// request so far is cleared; the host ends at the first '/', '?' or '#';
// "user[:password]@" before it sets those; user, password, host and path
// are percent-decoded; the path loses its leading and trailing slashes.
func (r *GitRequest) setURL(u string) error {
	proto, rest, ok := strings.Cut(u, "://")
	if !ok || proto == "" {
		return errors.New("credential url without a scheme: " + errtext.QuoteShort(u, 60))
	}
	*r = GitRequest{Protocol: proto}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, path := rest[:end], rest[end:]
	if at := strings.IndexByte(host, '@'); at >= 0 {
		user := host[:at]
		if colon := strings.IndexByte(user, ':'); colon >= 0 {
			r.Password = percentDecode(user[colon+1:])
			user = user[:colon]
		}
		r.Username = percentDecode(user)
		host = host[at+1:]
	}
	r.Host = percentDecode(host)
	path = strings.TrimLeft(path, "/")
	if path != "" {
		path = percentDecode(path)
		if trimmed := strings.TrimRight(path, "/"); trimmed != "" {
			path = trimmed
		} else {
			path = path[:1]
		}
	}
	r.Path = path
	if strings.ContainsAny(r.Username+r.Password+r.Host+r.Path, "\n\x00") {
		return errors.New("credential url holds an encoded newline or NUL: " + errtext.QuoteShort(u, 60))
	}
	return nil
}

// percentDecode decodes %XX escapes as git's url_decode does: an escape
// that is not two hex digits stays as it is, and '+' is not a space.
func percentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, lo := unhex(s[i+1]), unhex(s[i+2]); hi >= 0 && lo >= 0 {
				b = append(b, byte(hi<<4|lo))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

// unhex returns the value of the hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// URL is the request as protocol://host/path, the form git.urls match.
// git sends the path decoded, so the bytes a URL would read otherwise
// ('%', '?', '#' and control characters) are percent-encoded: the path
// that net/url reads back is the one git sent.
func (r *GitRequest) URL() string {
	return r.Protocol + "://" + r.Host + "/" + escapeGitPath(strings.TrimPrefix(r.Path, "/"))
}

// escapeGitPath percent-encodes '%', '?', '#' and control characters.
func escapeGitPath(p string) string {
	const upperhex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' && c != '?' && c != '#' && c >= 0x20 && c != 0x7f {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(p)+8), p[:i]...)
		}
		b = append(b, '%', upperhex[c>>4], upperhex[c&15])
	}
	if b == nil {
		return p
	}
	return string(b)
}

// Refused returns the secret git says the server refused (on erase).
func (r *GitRequest) Refused() string {
	if r.Credential != "" {
		return r.Credential
	}
	return r.Password
}

// HasCapability reports whether git announced the capability.
func (r *GitRequest) HasCapability(c string) bool {
	for _, have := range r.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

// GitAnswer is a credential for git.
type GitAnswer struct {
	Username string
	Token    string
	Expiry   time.Time
}

// OffersBearer reports whether one of the server's challenges (wwwauth[])
// is of the Bearer scheme.
func (r *GitRequest) OffersBearer() bool {
	for _, h := range r.WWWAuth {
		for _, scheme := range authSchemes(h) {
			if strings.EqualFold(scheme, "Bearer") {
				return true
			}
		}
	}
	return false
}

// authSchemes returns the auth-schemes of the challenges in one
// WWW-Authenticate value (RFC 9110 §11.6.1): it is a comma-separated list
// whose elements are either a challenge, "scheme [token68 | auth-param]",
// or a further auth-param, "name = value", of the challenge before them.
// Commas and names inside quoted strings are not looked at.
func authSchemes(h string) []string {
	var schemes []string
	for len(h) > 0 {
		// One element: up to a comma outside a quoted string.
		end, quoted := len(h), false
		for i := 0; i < len(h); i++ {
			c := h[i]
			switch {
			case quoted && c == '\\':
				i++
			case c == '"':
				quoted = !quoted
			case !quoted && c == ',':
				end = i
			}
			if end == i {
				break
			}
		}
		elem := strings.TrimLeft(h[:end], " \t")
		h = h[min(end+1, len(h)):]
		n := 0
		for n < len(elem) && isTokenChar(elem[n]) {
			n++
		}
		if n == 0 {
			continue
		}
		if rest := strings.TrimLeft(elem[n:], " \t"); strings.HasPrefix(rest, "=") {
			continue // an auth-param
		}
		schemes = append(schemes, elem[:n])
	}
	return schemes
}

// isTokenChar reports whether c may appear in an HTTP token (tchar).
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// WriteGitAnswer writes the answer to a get. When git understands the
// authtype capability (2.46+) and the server offers the Bearer scheme, the
// token goes as a Bearer credential that git sends as is and does not
// store (ephemeral); otherwise as username and password, which git sends
// as Basic: git 2.46+ announces authtype on every HTTP request, also to
// servers that take only Basic. password_expiry_utc tells git 2.41+ when
// to stop using it.
//
// A username or token holding a newline or NUL, which git's protocol
// cannot carry (its lines would end early and add attributes), is an
// error and nothing is written.
func WriteGitAnswer(w io.Writer, req *GitRequest, a GitAnswer) error {
	if strings.ContainsAny(a.Token, "\n\x00") {
		return errors.New("the token holds a newline or NUL byte, which a git credential cannot carry")
	}
	if strings.ContainsAny(a.Username, "\n\x00") {
		return errors.New("the git username holds a newline or NUL byte, which a git credential cannot carry")
	}
	var b strings.Builder
	expiry := strconv.FormatInt(a.Expiry.Unix(), 10)
	if req.HasCapability("authtype") && req.OffersBearer() {
		b.WriteString("capability[]=authtype\nauthtype=Bearer\ncredential=" + a.Token + "\nephemeral=true\n")
	} else {
		b.WriteString("username=" + a.Username + "\npassword=" + a.Token + "\n")
	}
	b.WriteString("password_expiry_utc=" + expiry + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}
