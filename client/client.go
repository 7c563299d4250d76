// Package client is the Go client of tokd's socket API, used by tokctl.
//
// tokctl runs on the path of every git, kubectl and docker call, so this
// package keeps its cost to one blocking Unix-socket round trip: it speaks
// the few lines of HTTP/1.1 it needs directly over a socket made with the
// syscall package, and links neither net nor net/http (their package
// initialisation alone costs milliseconds per process; see deps_test.go).
// Nor does it link encoding/json, fmt or net/url, which every tokctl
// process would pay for in start-up time and page faults whether it used
// them or not (docs/BENCHMARKS.md, section 1): answers are decoded with
// internal/jsonlite, held to encoding/json's results by FuzzDecodeAnswers.
package client

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/internal/errtext"
	"github.com/tokd/tokd/internal/jsonlite"
)

// ErrUnreachable is wrapped by errors for a daemon that is not listening.
var ErrUnreachable = errors.New("tokd is not reachable")

// APIError is a non-2xx answer from the daemon.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string { return e.Message }

// Sentinels matched by errors.Is against an *APIError's status.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	// ErrNoRoute matches the daemon's answer to a path it does not serve:
	// an older tokd, for a request added since.
	ErrNoRoute = errors.New("no such API path")
)

// Is reports whether the status of e matches target.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == 404
	case ErrForbidden:
		return e.StatusCode == 403
	case ErrNoRoute:
		return e.StatusCode == 404 && strings.HasPrefix(e.Message, "no such API path")
	}
	return false
}

// Client talks to one tokd socket.
type Client struct {
	Socket  string
	Timeout time.Duration // per round trip; 0 means 30 s
}

// maxResponse bounds a response read from the daemon.
const maxResponse = 4 << 20

// Token returns the profile's access token.
func (c *Client) Token(profile string) (*apitype.Token, error) {
	var tok apitype.Token
	return &tok, c.call("GET", tokenPath(profile, ""), nil, func(d *jsonlite.Decoder) error { return decodeToken(d, &tok) })
}

// Refresh makes the daemon refresh the profile's token now.
func (c *Client) Refresh(profile string) (*apitype.Token, error) {
	var tok apitype.Token
	return &tok, c.call("POST", tokenPath(profile, "/refresh"), nil, func(d *jsonlite.Decoder) error { return decodeToken(d, &tok) })
}

// Forget makes the daemon drop the profile's token.
func (c *Client) Forget(profile string) error {
	return c.call("DELETE", tokenPath(profile, ""), nil, nil)
}

// Import hands the daemon a tokens<n>.tok file for the profile.
func (c *Client) Import(profile string, tokFile []byte) (*apitype.Token, error) {
	var tok apitype.Token
	return &tok, c.call("POST", tokenPath(profile, "/import"), tokFile, func(d *jsonlite.Decoder) error { return decodeToken(d, &tok) })
}

// Status returns the state of the profiles the caller may see.
func (c *Client) Status() (*apitype.Status, error) {
	var st apitype.Status
	return &st, c.call("GET", apitype.PathPrefix+"status", nil, func(d *jsonlite.Decoder) error { return decodeStatus(d, &st) })
}

// Git returns the credential for a git request URL
// (protocol://host[:port]/path), or an error matching ErrNotFound when no
// profile the caller may use covers it.
func (c *Client) Git(requestURL string) (*apitype.Credential, error) {
	var cred apitype.Credential
	return &cred, c.call("GET", apitype.PathPrefix+"git?url="+queryEscape(requestURL), nil, func(d *jsonlite.Decoder) error { return decodeCredential(d, &cred) })
}

// GitErase tells the daemon that the server refused the token it gave for
// requestURL, so that the next request gets a new one.
func (c *Client) GitErase(requestURL string) error {
	return c.call("DELETE", apitype.PathPrefix+"git?url="+queryEscape(requestURL), nil, nil)
}

// GitRefused tells the daemon that the server refused refused, the secret
// git sent for requestURL: the daemon forgets its token for that URL only
// if it is that secret, comparing and forgetting in one step. A daemon
// older than this request answers an error matching ErrNoRoute.
func (c *Client) GitRefused(requestURL, refused string) error {
	body := append([]byte(`{"refused":`), jsonlite.AppendString(nil, refused)...)
	body = append(body, '}')
	return c.call("POST", apitype.PathPrefix+"git/refused?url="+queryEscape(requestURL), body, nil)
}

// Docker returns the credential for a docker server, or an error matching
// ErrNotFound.
func (c *Client) Docker(server string) (*apitype.Credential, error) {
	var cred apitype.Credential
	return &cred, c.call("GET", apitype.PathPrefix+"docker?server="+queryEscape(server), nil, func(d *jsonlite.Decoder) error { return decodeCredential(d, &cred) })
}

// DockerList returns the registries the caller may use.
func (c *Client) DockerList() (apitype.DockerList, error) {
	var list apitype.DockerList
	err := c.call("GET", apitype.PathPrefix+"docker/list", nil, func(d *jsonlite.Decoder) error { return decodeDockerList(d, &list) })
	return list, err
}

func tokenPath(profile, suffix string) string {
	return apitype.PathPrefix + "token/" + pathEscape(profile) + suffix
}

// call performs one request and, for a 2xx answer, decodes its JSON body
// with decode (if not nil); any other status is an *APIError.
func (c *Client) call(method, path string, body []byte, decode func(d *jsonlite.Decoder) error) error {
	status, header, respBody, err := c.roundTrip(method, path, body)
	if err != nil {
		return err
	}
	if v := header["tokd-api-version"]; v != apitype.Version {
		if v == "" {
			return errors.New(c.Socket + " does not answer as tokd (no " + apitype.VersionHeader + " header)")
		}
		return errors.New("tokd speaks API version " + v + ", this tokctl speaks " + apitype.Version + ": use the tokctl of the same release")
	}
	if status < 200 || status > 299 {
		var e apitype.ErrorResponse
		if jsonlite.Decode(respBody, func(d *jsonlite.Decoder) error { return decodeError(d, &e) }) != nil || e.Error == "" {
			e.Error = "tokd answered HTTP " + strconv.Itoa(status)
		}
		return &APIError{StatusCode: status, Message: e.Error}
	}
	if decode == nil {
		return nil
	}
	if err := jsonlite.Decode(respBody, decode); err != nil {
		return errtext.Wrap("reading tokd's answer", err)
	}
	return nil
}

// roundTrip sends one HTTP/1.1 request with Connection: close and reads
// the whole answer. Header names in the result are lower-case.
func (c *Client) roundTrip(method, path string, body []byte) (int, map[string]string, []byte, error) {
	deadline := time.Now().Add(c.timeout())
	fd, err := c.dial()
	if err != nil {
		return 0, nil, nil, err
	}
	defer syscall.Close(fd)

	req := make([]byte, 0, 192+len(path)+len(body))
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: tokd\r\nUser-Agent: tokctl\r\n"+apitype.VersionHeader+": "+apitype.Version+"\r\nConnection: close\r\n"...)
	if body != nil || method == "POST" {
		req = append(req, "Content-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	if err := writeAll(fd, req); err != nil {
		return 0, nil, nil, errtext.Wrap("sending to tokd at "+c.Socket, err)
	}
	raw, err := readAll(fd, deadline)
	if err != nil {
		return 0, nil, nil, errtext.Wrap("reading from tokd at "+c.Socket, err)
	}
	status, header, respBody, err := parseResponse(raw)
	if err != nil {
		return 0, nil, nil, errtext.Wrap("tokd at "+c.Socket, err)
	}
	return status, header, respBody, nil
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 30 * time.Second
	}
	return c.Timeout
}

func (c *Client) dial() (int, error) {
	if c.Socket == "" {
		return -1, &errtext.Error{Msg: ErrUnreachable.Error() + ": no socket path", Err: ErrUnreachable}
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, errtext.Wrap("socket", err)
	}
	tv := syscall.NsecToTimeval(c.timeout().Nanoseconds())
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: c.Socket})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		switch err {
		case syscall.ENOENT, syscall.ECONNREFUSED, syscall.ENOTDIR:
			return -1, &errtext.Error{Msg: ErrUnreachable.Error() + " at " + c.Socket + ": " + err.Error(), Err: ErrUnreachable}
		}
		return -1, errtext.Wrap("connecting to tokd at "+c.Socket, err)
	}
	return fd, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readAll reads until EOF, at most maxResponse bytes, and fails once
// deadline has passed: SO_RCVTIMEO is set before each read to the time
// left, so that an answer trickling in cannot outlast the round trip.
func readAll(fd int, deadline time.Time) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errTimeout
		}
		tv := syscall.NsecToTimeval(left.Nanoseconds())
		if tv.Sec == 0 && tv.Usec == 0 {
			tv.Usec = 1 // zero would mean no timeout at all
		}
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		// Read one byte past the bound, so that an answer of exactly
		// maxResponse bytes is told apart from a longer one.
		n, err := syscall.Read(fd, buf[len(buf):min(cap(buf), maxResponse+1)])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return nil, errTimeout
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > maxResponse {
			return nil, errors.New("answer larger than " + strconv.Itoa(maxResponse) + " bytes")
		}
	}
}

var errTimeout = errors.New("timed out waiting for an answer")

// parseResponse reads an HTTP/1.1 response that ends at EOF: status line,
// headers, and a body framed by Content-Length, chunked encoding or EOF.
func parseResponse(raw []byte) (int, map[string]string, []byte, error) {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, nil, errors.New("truncated answer")
	}
	lines := strings.Split(string(head), "\r\n")
	proto, rest, _ := strings.Cut(lines[0], " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || status < 100 || status > 999 {
		return 0, nil, nil, errors.New("not an HTTP answer: " + errtext.QuoteShort(lines[0], 40))
	}
	header := make(map[string]string, len(lines))
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return 0, nil, nil, errors.New("malformed header line " + errtext.QuoteShort(l, 40))
		}
		header[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	switch {
	case strings.EqualFold(header["transfer-encoding"], "chunked"):
		body, err = dechunk(body)
		if err != nil {
			return 0, nil, nil, err
		}
	case header["content-length"] != "":
		n, err := strconv.Atoi(header["content-length"])
		if err != nil || n < 0 || n > len(body) {
			return 0, nil, nil, errors.New("truncated answer")
		}
		body = body[:n]
	}
	return status, header, body, nil
}

func dechunk(b []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, errors.New("truncated chunked answer")
		}
		sizeText, _, _ := bytes.Cut(line, []byte(";"))
		size, err := strconv.ParseUint(strings.TrimSpace(string(sizeText)), 16, 32)
		if err != nil {
			return nil, errors.New("malformed chunked answer")
		}
		if size == 0 {
			return out, nil
		}
		if uint64(len(rest)) < size+2 {
			return nil, errors.New("truncated chunked answer")
		}
		out = append(out, rest[:size]...)
		b = rest[size+2:]
	}
}
