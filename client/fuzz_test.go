package client

import (
	"strings"
	"testing"
)

// FuzzParseResponse checks that parseResponse never panics on what a
// socket may hand it, and that what it accepts is consistent with its
// input: a status in range, header names folded and trimmed, and a body
// that never exceeds the input. A body framed by Content-Length or EOF is
// a sub-slice of the input, right after the head; a chunked body is
// reassembled and can only be shorter than the input.
func FuzzParseResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTokd-Api-Version: 1\r\n\r\n{\"a\":1}",
		"HTTP/1.1 204 No Content\r\nTokd-Api-Version: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 20\r\n\r\n{\"error\":\"no such\"}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nab\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"HTTP/1.0 999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
		"SSH-2.0-OpenSSH_9.6\r\n\r\n",
		"\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		input := string(raw) // raw must come back unchanged
		status, header, body, err := parseResponse(raw)
		if string(raw) != input {
			t.Fatal("parseResponse changed its input")
		}
		if err != nil {
			if status != 0 || header != nil || body != nil {
				t.Errorf("error %v with status %d, header %v, body %q", err, status, header, body)
			}
			return
		}
		if status < 100 || status > 999 {
			t.Errorf("status %d accepted", status)
		}
		for k := range header {
			if k != strings.ToLower(strings.TrimSpace(k)) {
				t.Errorf("header name %q not folded to lower case and trimmed", k)
			}
		}
		if len(body) > len(raw) {
			t.Fatalf("body of %d bytes from an input of %d", len(body), len(raw))
		}
		if strings.EqualFold(header["transfer-encoding"], "chunked") {
			return
		}
		// The body is raw[off : off+len(body)], off just past the head.
		off := strings.Index(input, "\r\n\r\n") + 4
		if off < 4 || off+len(body) > len(raw) {
			t.Fatalf("body of %d bytes does not fit after a head of %d bytes in %d", len(body), off, len(raw))
		}
		if cap(body) != cap(raw)-off || (len(body) > 0 && &body[0] != &raw[off]) {
			t.Fatalf("body %q is not the sub-slice of the input after its head", body)
		}
	})
}
