package daemon

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/tokd/tokd/apitype"
)

// This file reads HTTP/1.1 requests for httpServer (httpserver.go): the
// head (request line and header fields, RFC 9112 §2–5) and the body
// (Content-Length or chunked, §6–7), with hard limits on each.

// requestHead is one request's head as parsed. Its byte slices point into
// the connection's read buffer and are valid until the buffer is next
// filled: the fast path uses them at once, the slow path copies them into
// an http.Request first.
type requestHead struct {
	method []byte
	target []byte // the request-target as sent
	minor  int    // the protocol is HTTP/1.minor, 0 or 1
	fields []headerField

	host  []byte // the Host field's value
	hosts int    // how many Host fields

	contentLength  int64 // -1 when the request has no Content-Length
	chunked        bool  // Transfer-Encoding: chunked
	close          bool  // the connection closes after the answer
	keepAlive10    bool  // an HTTP/1.0 request that asked to keep the connection
	expectContinue bool  // the client waits for 100 Continue before the body

	// The first value of the fields the API's checks read; empty when
	// absent, as http.Header.Get has it.
	origin, referer, apiVersion []byte
}

// headerField is one header field as sent: the name unchanged, the value
// without surrounding whitespace.
type headerField struct {
	name, value []byte
}

// requestError is a request the server refuses before any handler runs:
// the status and the message of its {"error": ...} answer. The message
// never quotes the request, which may carry secrets.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

var (
	errHeadTooLarge = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request line and header fields larger than 16 KiB"}
	errHeadTimeout  = &requestError{http.StatusRequestTimeout, "request head not received in time"}
)

func badRequest(msg string) *requestError { return &requestError{http.StatusBadRequest, msg} }

// headEnd returns the length of the head at the start of b, through the
// empty line that ends it, or 0 when b holds no complete head yet. Lines
// end in CRLF or, as RFC 9112 §2.2 allows a recipient to accept, LF.
// from is where to resume a search that found nothing in a prefix of b;
// headEnd leaves in *from where the next search of a longer b should
// start, so that a head arriving a byte at a time costs linear time.
func headEnd(b []byte, from *int) int {
	i := *from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j + 1 // just past this line's LF
		if k < len(b) && b[k] == '\n' {
			*from = 0
			return k + 1
		}
		if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' {
			*from = 0
			return k + 2
		}
		i = k
	}
	// An LF and the CR after it may be the last bytes: look at them again.
	*from = max(len(b)-2, 0)
	return 0
}

// cutLine splits b after its first line, dropping the line end.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parse parses a complete head (as delimited by headEnd) into h, reusing
// h's field slice.
func (h *requestHead) parse(b []byte) *requestError {
	*h = requestHead{fields: h.fields[:0], contentLength: -1}
	line, rest := cutLine(b)
	if err := h.parseRequestLine(line); err != nil {
		return err
	}
	var te []byte
	tes, connClose, connKeepAlive := 0, false, false
	var expect []byte
	for {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return badRequest("malformed header line (no field name and colon)")
		}
		name := line[:colon]
		// A space before the colon, or a line folded onto the previous
		// one (obs-fold), make the name invalid: RFC 9112 §5.1 and §5.2
		// let a server refuse both with 400.
		if !validToken(name) {
			return badRequest("malformed header field name")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return badRequest("control character in a header field value")
			}
		}
		h.fields = append(h.fields, headerField{name, value})

		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				h.hosts++
				h.host = value
			}
		case 6:
			switch {
			case equalFold(name, "origin"):
				if h.origin == nil {
					h.origin = value
				}
			case equalFold(name, "expect"):
				if expect == nil {
					expect = value
				}
			}
		case 7:
			if equalFold(name, "referer") && h.referer == nil {
				h.referer = value
			}
		case 10:
			if equalFold(name, "connection") {
				forEachToken(value, func(tok []byte) {
					connClose = connClose || equalFold(tok, "close")
					connKeepAlive = connKeepAlive || equalFold(tok, "keep-alive")
				})
			}
		case 14:
			if equalFold(name, "content-length") {
				n, ok := parseContentLength(value)
				if !ok {
					return badRequest("malformed Content-Length")
				}
				if h.contentLength >= 0 && n != h.contentLength {
					return badRequest("several different Content-Length fields")
				}
				h.contentLength = n
			}
		case len(apitype.VersionHeader):
			if equalFold(name, apitype.VersionHeader) && h.apiVersion == nil {
				h.apiVersion = value
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				tes++
				te = value
			}
		}
	}

	switch {
	case h.minor == 1 && h.hosts == 0:
		return badRequest("missing required Host header")
	case h.hosts > 1:
		return badRequest("too many Host headers")
	case !validHost(h.host):
		return badRequest("malformed Host header")
	}
	if tes > 0 {
		switch {
		case h.minor == 0:
			// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding
			// has faulty framing.
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		case tes > 1 || !equalFold(te, "chunked"):
			return &requestError{http.StatusNotImplemented, "unsupported transfer encoding: only chunked is"}
		case h.contentLength >= 0:
			// RFC 9112 §6.3 lets a server refuse both: the framing that
			// request smuggling relies on.
			return badRequest("both Transfer-Encoding and Content-Length")
		}
		h.chunked = true
	}
	if h.minor == 1 {
		h.close = connClose
	} else {
		h.close = connClose || !connKeepAlive
		h.keepAlive10 = !h.close
	}
	if len(expect) > 0 {
		// As net/http: 100-continue is honoured for an HTTP/1.1 request
		// with a body, ignored otherwise; any other expectation fails.
		if !equalFold(expect, "100-continue") {
			return &requestError{http.StatusExpectationFailed, "unsupported Expect header: only 100-continue is"}
		}
		h.expectContinue = h.minor == 1 && (h.chunked || h.contentLength > 0)
	}
	return nil
}

// parseRequestLine parses "METHOD SP request-target SP HTTP-version".
func (h *requestHead) parseRequestLine(line []byte) *requestError {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return badRequest("malformed request line")
	}
	h.method = line[:sp1]
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return badRequest("malformed request line")
	}
	h.target, rest = rest[:sp2], rest[sp2+1:]
	if !validToken(h.method) {
		return badRequest("malformed request method")
	}
	for _, c := range h.target {
		if c <= ' ' || c == 0x7f {
			return badRequest("control character in the request target")
		}
	}
	switch {
	case string(rest) == "HTTP/1.1":
		h.minor = 1
	case string(rest) == "HTTP/1.0":
		h.minor = 0
	case len(rest) == 8 && string(rest[:7]) == "HTTP/1." && '2' <= rest[7] && rest[7] <= '9':
		// A later HTTP/1.x is answered as 1.1, its highest version this
		// server speaks (RFC 9110 §6.2), as net/http does.
		h.minor = 1
	default:
		if isHTTPVersion(rest) {
			return &requestError{http.StatusHTTPVersionNotSupported, "unsupported HTTP version: this server speaks HTTP/1.1 and HTTP/1.0"}
		}
		return badRequest("malformed HTTP version")
	}
	return nil
}

// isHTTPVersion reports whether v reads HTTP/DIGITS[.DIGITS].
func isHTTPVersion(v []byte) bool {
	rest, ok := bytes.CutPrefix(v, []byte("HTTP/"))
	if !ok {
		return false
	}
	major, minor, dot := bytes.Cut(rest, []byte("."))
	return allDigits(major) && (!dot || allDigits(minor))
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// parseContentLength parses a Content-Length value: digits only, at most
// 18 of them, so that it fits an int64 with room to spare.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// trimOWS trims the optional whitespace (SP and HTAB) around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// forEachToken calls f with each element of a comma-separated list.
func forEachToken(b []byte, f func([]byte)) {
	for len(b) > 0 {
		var tok []byte
		tok, b, _ = bytes.Cut(b, []byte(","))
		if tok = trimOWS(tok); len(tok) > 0 {
			f(tok)
		}
	}
}

// equalFold reports whether b and s are equal ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if lowerASCII(c) != lowerASCII(s[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// tokenChars marks the bytes of an RFC 9110 token (tchar): methods and
// field names.
var tokenChars = alnumAnd("!#$%&'*+-.^_`|~")

func validToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return len(b) > 0
}

// hostChars marks the bytes net/http accepts in a Host field
// (golang.org/x/net/http/httpguts.ValidHostHeader): unreserved and
// sub-delims, percent-encoding, and the brackets and colon of IP literals
// and ports.
var hostChars = alnumAnd("-._~!$&'()*+,;=%:[]")

// alnumAnd returns the table marking ASCII letters, digits and the bytes
// of extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for i := range len(extra) {
		t[extra[i]] = true
	}
	return t
}

func validHost(b []byte) bool {
	for _, c := range b {
		if !hostChars[c] {
			return false
		}
	}
	return true
}

// maxChunkLine bounds a chunk-size line, extensions included (net/http's
// bound too).
const maxChunkLine = 4096

// maxDrain is how much of a body its handler left unread the server reads
// and discards to keep the connection; past it, it closes the connection
// instead (net/http's maxPostHandlerReadBytes).
const maxDrain = 256 << 10

// maxChunkExcess bounds the chunk framing beyond its allowance
// (requestBody.excess); net/http's bound too.
const maxChunkExcess = 16 << 10

var (
	errMalformedChunk = errors.New("malformed chunked request body")
	errChunkExcess    = errors.New("chunked request body with too much framing for its data")
)

// requestBody reads one request's body from its connection: Content-Length
// bytes, or chunks until the last one and its trailer. It is the Body of
// the slow path's http.Request.
type requestBody struct {
	c       *conn
	chunked bool
	// n is what is left of the body (Content-Length) or of the current
	// chunk (chunked).
	n int64
	// inChunk says the CRLF after a chunk's data is still to read.
	inChunk bool
	// excess counts chunk framing (size lines, extensions, CRLFs) beyond
	// an allowance per chunk and per data byte, as net/http does: tiny
	// chunks with long extensions would otherwise cost the server CPU
	// without bound for a small body.
	excess int64
	done   bool  // the whole body was read
	err    error // a read failed; every later read fails the same way

	expectContinue bool // the client waits for 100 Continue
	continueSent   bool
}

// reset prepares b for the request whose head is h.
func (b *requestBody) reset(c *conn, h *requestHead) {
	*b = requestBody{c: c, chunked: h.chunked, expectContinue: h.expectContinue}
	switch {
	case h.chunked:
	case h.contentLength > 0:
		b.n = h.contentLength
	default:
		b.done = true
	}
}

// pending reports whether part of the body is still unread.
func (b *requestBody) pending() bool { return !b.done }

func (b *requestBody) Read(p []byte) (int, error) {
	switch {
	case b.err != nil:
		return 0, b.err
	case b.done:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	if b.expectContinue && !b.continueSent {
		// The client sends the body once told to (RFC 9110 §10.1.1).
		b.continueSent = true
		b.c.out = append(b.c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		if err := b.c.flush(); err != nil {
			b.err = err
			return 0, err
		}
	}
	if b.chunked && b.n == 0 {
		if err := b.nextChunk(); err != nil {
			b.err = err
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	n, err := b.c.readBody(p[:min(int64(len(p)), b.n)])
	b.n -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
		return n, err
	}
	if b.n == 0 && !b.chunked {
		b.done = true
	}
	return n, nil
}

// nextChunk reads the CRLF that ends the previous chunk's data, then the
// next chunk-size line; after the last chunk it reads the trailer section
// (which it discards) and marks the body done.
func (b *requestBody) nextChunk() error {
	if b.inChunk {
		line, err := b.c.readLine(2)
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return errMalformedChunk
		}
		b.inChunk = false
	}
	line, err := b.c.readLine(maxChunkLine)
	if err != nil {
		return err
	}
	size, _, _ := bytes.Cut(line, []byte(";"))
	size = trimOWS(size)
	if len(size) == 0 || len(size) > 15 {
		return errMalformedChunk
	}
	var n int64
	for _, c := range size {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return errMalformedChunk
		}
		n = n<<4 | int64(d)
	}
	b.excess += int64(len(line)) + 2 - 16 - 2*n
	b.excess = max(b.excess, 0)
	if b.excess > maxChunkExcess {
		return errChunkExcess
	}
	if n > 0 {
		b.n, b.inChunk = n, true
		return nil
	}
	// The last chunk: the trailer fields, bounded like a head, end with
	// an empty line.
	for total := 0; ; {
		line, err := b.c.readLine(b.c.srv.maxHeaderBytes - total)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			b.done = true
			return nil
		}
		total += len(line) + 2
	}
}

// Close does nothing: the server reads or drops what the handler left
// (drain).
func (b *requestBody) Close() error { return nil }

// drain reads and discards what the handler left of the body, up to
// maxDrain bytes, and reports whether the whole body is now read, so
// that the connection can serve the next request.
func (b *requestBody) drain() bool {
	switch {
	case b.done:
		return true
	case b.err != nil:
		return false
	case b.expectContinue && !b.continueSent:
		// The client may or may not send the body it was not asked for.
		return false
	case !b.chunked && b.n > maxDrain:
		return false
	}
	_, err := io.CopyN(io.Discard, b, maxDrain+1)
	return b.done && err == io.EOF
}
