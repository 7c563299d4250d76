package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"github.com/tokd/tokd/apitype"
)

// This file answers the requests httpServer reads: the fast path for a
// held token, the slow path through the API's handlers, and the server's
// own refusals.

// tokenPathPrefix is the hot route's path before the profile.
var tokenPathPrefix = []byte(apitype.PathPrefix + "token/")

// serveToken answers GET /v1/token/{profile} when the caller may use the
// profile and the cache holds its token, which is nearly every request
// tokd gets. It makes the checks guard and authorised make and answers
// exactly what writeToken would (TestFastPathAnswersAsTheHandler), with
// no http.Request and no encoding, its one allocation the cache's copy of
// the token; anything else (a
// refusal, a token to wait for, a body, a path to unescape) it leaves to
// the slow path by returning false, so that every refusal and error
// keeps its one implementation.
func (c *conn) serveToken(keep bool) bool {
	h := &c.head
	if c.cred == nil || string(h.method) != http.MethodGet || h.chunked || h.contentLength > 0 ||
		len(h.origin) > 0 || len(h.referer) > 0 ||
		len(h.apiVersion) > 0 && string(h.apiVersion) != apitype.Version {
		return false
	}
	raw, ok := bytes.CutPrefix(h.target, tokenPathPrefix)
	if !ok || !plainSegment(raw) {
		return false
	}
	if c.profile != string(raw) {
		c.profile = string(raw)
	}
	profile := c.profile
	api := c.srv.api
	if !api.allowed(c.cred, profile) {
		return false
	}
	tok, ok := api.held(profile)
	// Checked again with the token in hand, as the slow path does after
	// its wait: a reload between the first check and held may have taken
	// the caller's access away and replaced the token.
	if !ok || !api.allowed(c.cred, profile) {
		return false
	}
	sp := api.servedProfile(profile)
	if sp == nil {
		return false
	}
	// The answer's JSON is encoded as writeToken encodes it, once per
	// token rather than once per request.
	answer := sp.answer.Load()
	if answer == nil || !answer.matches(tok) {
		body, err := json.Marshal(apiToken(profile, tok))
		if err != nil {
			return false // the handler answers
		}
		answer = &tokenAnswer{accessToken: tok.AccessToken, tokenType: tok.TokenType, expiry: tok.Expiry, body: append(body, '\n')}
		sp.answer.Store(answer)
	}
	sp.ok.Inc()

	out := append(c.out, "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n"...)
	out = appendConnection(out, keep, h.keepAlive10)
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len(answer.body)), 10)
	out = append(out, "\r\nContent-Type: application/json\r\n"...)
	out = append(out, c.srv.dateField(time.Now())...)
	out = append(out, apitype.VersionHeader+": "+apitype.Version+"\r\n\r\n"...)
	c.out = append(out, answer.body...)
	return true
}

// appendConnection appends the Connection field an answer needs: close
// when the connection closes after it, keep-alive for an HTTP/1.0 client
// that asked to keep it.
func appendConnection(b []byte, keep, keepAlive10 bool) []byte {
	switch {
	case !keep:
		return append(b, "Connection: close\r\n"...)
	case keepAlive10:
		return append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// plainSegment reports whether b is a path segment that ServeMux would
// match as {profile} unchanged: unreserved characters only (nothing to
// unescape), and not a dot segment (which it would clean away).
func plainSegment(b []byte) bool {
	if len(b) == 0 || string(b) == "." || string(b) == ".." {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

// serveSlow answers a request through the API's handler, with an
// http.Request and a buffered http.ResponseWriter; it reports whether the
// connection serves another request.
func (c *conn) serveSlow(keep bool) bool {
	keepAlive10 := c.head.keepAlive10
	req, rerr := c.newRequest()
	if rerr != nil {
		c.writeError(rerr.status, rerr.msg)
		c.linger = true
		return false
	}
	w := &responseWriter{c: c, header: make(http.Header, 4), body: c.scratch[:0]}
	ctx, cancel := context.WithCancel(c.ctx)
	rctx := &requestContext{Context: ctx, c: c, cancel: cancel}
	panicked := c.runHandler(w, req.WithContext(rctx))
	rctx.watch.Do(func() {}) // too late to start watching now
	cancel()
	gone := c.stopBackgroundRead()
	c.scratch = w.body[:0]
	switch {
	case panicked == http.ErrAbortHandler:
		c.broken = true // as net/http: close without an answer
		return false
	case panicked != nil:
		c.writeError(http.StatusInternalServerError, "internal error")
		c.linger = c.body.pending()
		return false
	}
	// As net/http: the connection goes on if what the handler left of the
	// body is small enough to read and drop, and the client may be told so.
	c.linger = !gone && !c.body.drain()
	if gone || c.linger || hasToken(w.header.Values("Connection"), "close") || c.srv.inShutdown.Load() {
		keep = false
	}
	c.writeResponse(w, req.Method == http.MethodHead, keep, keepAlive10)
	return keep
}

// runHandler runs the API's handler. A panic is logged (with the stack,
// which holds no token text) and returned, as net/http recovers it.
func (c *conn) runHandler(w *responseWriter, req *http.Request) (panicked any) {
	defer func() {
		if v := recover(); v != nil {
			panicked = v
			if v != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.log.Error("panic serving a socket request", "method", req.Method, "path", req.URL.Path, "panic", fmt.Sprint(v), "stack", string(buf))
			}
		}
	}()
	c.srv.handler.ServeHTTP(w, req)
	return nil
}

// newRequest builds the http.Request of the head just read, its body
// reading from the connection. Header names are canonicalised and Host
// moved to Request.Host, as net/http does.
func (c *conn) newRequest() (*http.Request, *requestError) {
	h := &c.head
	target := string(h.target)
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, badRequest("malformed request target")
	}
	header := make(http.Header, len(h.fields))
	for _, f := range h.fields {
		if equalFold(f.name, "host") {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(f.name))
		header[k] = append(header[k], string(f.value))
	}
	req := &http.Request{
		Method:     string(h.method),
		URL:        u,
		Proto:      "HTTP/1." + strconv.Itoa(h.minor),
		ProtoMajor: 1,
		ProtoMinor: h.minor,
		Header:     header,
		Body:       http.NoBody,
		Host:       u.Host,
		Close:      h.close,
		RequestURI: target,
	}
	if req.Host == "" {
		req.Host = string(h.host)
	}
	if c.body.pending() {
		req.Body = &c.body
		req.ContentLength = h.contentLength
		if h.chunked {
			req.TransferEncoding = []string{"chunked"}
		}
	}
	if ra := c.nc.RemoteAddr(); ra != nil {
		req.RemoteAddr = ra.String()
	}
	return req, nil
}

// hasToken reports whether any of the comma-separated values holds tok.
func hasToken(values []string, lowerTok string) bool {
	found := false
	for _, v := range values {
		forEachToken([]byte(v), func(t []byte) { found = found || equalFold(t, lowerTok) })
	}
	return found
}

// responseWriter is the slow path's http.ResponseWriter: it keeps the
// whole answer, so that the server frames it with a Content-Length (the
// answers are small) and can still decide to close the connection.
type responseWriter struct {
	c      *conn
	header http.Header
	status int    // 0 until WriteHeader
	body   []byte // what the handler wrote
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.status != 0 {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer goes out before the final one, as
		// net/http sends it.
		out := appendStatusLine(w.c.out, code)
		out = appendHeader(out, w.header)
		w.c.out = append(out, "\r\n"...)
		return
	}
	w.status = code
	// As net/http: what the handler changes after this does not count.
	w.header = w.header.Clone()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// bodyAllowed reports whether an answer with status may have a body
// (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// writeResponse frames the answer w holds: status line, the handler's
// header with Content-Length, Date and Connection as they must be, and
// the body unless the request was HEAD.
func (c *conn) writeResponse(w *responseWriter, head, keep, keepAlive10 bool) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h := w.header
	h.Del("Transfer-Encoding")
	h.Del("Connection")
	if bodyAllowed(w.status) {
		if !head || len(w.body) > 0 || h.Get("Content-Length") == "" {
			h.Set("Content-Length", strconv.Itoa(len(w.body)))
		}
		if _, ok := h["Content-Type"]; !ok && len(w.body) > 0 {
			h.Set("Content-Type", http.DetectContentType(w.body))
		}
	} else {
		h.Del("Content-Length")
	}
	switch {
	case !keep:
		h.Set("Connection", "close")
	case keepAlive10:
		h.Set("Connection", "keep-alive")
	}
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	out := appendStatusLine(c.out, w.status)
	out = appendHeader(out, h)
	out = append(out, "\r\n"...)
	if !head && bodyAllowed(w.status) {
		out = append(out, w.body...)
	}
	c.out = out
}

// writeError answers with status and {"error": msg}, then the connection
// closes: the server's own refusals, before or instead of a handler.
func (c *conn) writeError(status int, msg string) {
	body, _ := json.Marshal(apitype.ErrorResponse{Error: msg})
	body = append(body, '\n')
	out := appendStatusLine(c.out, status)
	out = append(out, "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\nContent-Type: application/json\r\n"...)
	out = append(out, c.srv.dateField(time.Now())...)
	out = append(out, apitype.VersionHeader+": "+apitype.Version+"\r\n\r\n"...)
	c.out = append(out, body...)
}

func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(status), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader appends h in wire format, as http.Header.Write writes it
// (sorted, values' line breaks replaced by spaces).
func appendHeader(b []byte, h http.Header) []byte {
	w := appendWriter{b}
	h.Write(&w)
	return w.b
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}
