package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Error is every failure of a token request: a network error or timeout,
// an RFC 6749 §5.2 error response, a non-JSON or malformed body, or an
// answer tokd cannot use. Callers branch on Retryable and RetryAfter.
type Error struct {
	StatusCode  int    // HTTP status; 0 when no response arrived
	Code        string // RFC 6749 "error", e.g. "invalid_grant"
	Description string // "error_description", or a summary of a non-JSON body
	// Retryable reports whether the same request may succeed later
	// (network errors, every 429, 5xx); false for invalid_grant,
	// invalid_client, invalid_scope, unsupported_grant_type and other
	// client errors, unless the status is 429.
	Retryable bool
	// RetryAfter is the server's Retry-After, in seconds or as an HTTP date,
	// relative to the time the response arrived; 0 when absent.
	RetryAfter time.Duration
	Err        error // the underlying cause, for network errors
}

// Error codes that callers and tests branch on (RFC 6749 §5.2).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeServerError          = "server_error"
	CodeTemporarilyUnavail   = "temporarily_unavailable"
)

// ErrMultiResource is wrapped by the error for an answer carrying one
// token per resource server.
var ErrMultiResource = errors.New("the token endpoint answered one token per resource server")

// multiResourceHelp explains ErrMultiResource and the matching server error.
const multiResourceHelp = "the scopes span several resource servers: the identity domain then " +
	"issues one token per resource server ({\"tokenResponses\": [...]}, with the scope " +
	"urn:opc:resource:multiresourcescope), which tokd cannot serve as one token; " +
	"use one profile per resource server"

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint: ")
	switch {
	case e.Code != "" && e.Description != "":
		fmt.Fprintf(&b, "%s: %s", e.Code, e.Description)
	case e.Code != "":
		b.WriteString(e.Code)
	case e.Description != "":
		b.WriteString(e.Description)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("request failed")
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Err != nil && (e.Code != "" || e.Description != "") {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the request may succeed later (Retryable).
func (e *Error) Temporary() bool { return e.Retryable }

// RetryDelay returns RetryAfter.
func (e *Error) RetryDelay() time.Duration { return e.RetryAfter }

// RateLimited reports whether the server refused the request for its rate
// limit (HTTP 429); the cache backs off longer from those.
func (e *Error) RateLimited() bool { return e.StatusCode == http.StatusTooManyRequests }

// permanentCodes are the RFC 6749 errors that no retry of the same
// request can cure.
var permanentCodes = map[string]bool{
	CodeInvalidRequest:       true,
	CodeInvalidClient:        true,
	CodeInvalidGrant:         true,
	CodeUnauthorizedClient:   true,
	CodeUnsupportedGrantType: true,
	CodeInvalidScope:         true,
}

// maxErrorText bounds the text kept from an error body.
const maxErrorText = 512

// ParseErrorResponse turns a non-2xx answer into an *Error. body may be
// RFC 6749 error JSON, any other JSON, or not JSON at all; now is the time
// the response arrived, against which an HTTP-date Retry-After is measured.
func ParseErrorResponse(status int, header http.Header, body []byte, now time.Time) *Error {
	return parseErrorResponse(status, header, body, now, nil)
}

// parseErrorResponse is ParseErrorResponse that also replaces, with hide,
// the request's credentials wherever the server's text quotes them.
func parseErrorResponse(status int, header http.Header, body []byte, now time.Time, hide *strings.Replacer) *Error {
	e := &Error{
		StatusCode: status,
		RetryAfter: ParseRetryAfter(header.Get("Retry-After"), now),
	}
	var rfc struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
	}
	if json.Unmarshal(body, &rfc) == nil {
		e.Code = cleanText(hideIn(hide, jsonString(rfc.Error)))
		e.Description = cleanText(hideIn(hide, jsonString(rfc.ErrorDescription)))
	}
	if e.Code == "" && e.Description == "" {
		e.Description = describeBody(status, header, body, hide)
	}
	if e.Code == CodeInvalidScope && mentionsMultiResource(e.Description) {
		e.Description += ": " + multiResourceHelp
	}
	switch {
	case status == http.StatusTooManyRequests:
		// RFC 6585 §4: the rate limit, transient whatever the body's code
		// (some servers say invalid_request); RateLimited reports it too.
		e.Retryable = true
	case status == http.StatusRequestTimeout, status >= 500:
		e.Retryable = !permanentCodes[e.Code]
	case e.Code == CodeServerError || e.Code == CodeTemporarilyUnavail:
		e.Retryable = true
	default:
		e.Retryable = false
	}
	return e
}

// jsonString returns raw as a string when it is a JSON string, else "".
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// hideIn returns s with what hide names replaced; hide may be nil.
func hideIn(hide *strings.Replacer, s string) string {
	if hide == nil {
		return s
	}
	return hide.Replace(s)
}

// describeBody summarises a body that carries no RFC 6749 error.
func describeBody(status int, header http.Header, body []byte, hide *strings.Replacer) string {
	text := http.StatusText(status)
	if text == "" {
		text = "unexpected status"
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return strings.ToLower(text) + " with an empty body"
	}
	return fmt.Sprintf("%s with a non-OAuth body (%s, %d bytes): %q",
		strings.ToLower(text), contentType(header), len(body), cleanText(hideIn(hide, string(trimmed))))
}

// cleanText makes server-supplied text safe for one log line: valid
// UTF-8, no control characters, bounded length.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorText {
		cut := maxErrorText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// mentionsMultiResource reports whether an invalid_scope description is
// about scopes from several resource servers.
func mentionsMultiResource(desc string) bool {
	d := strings.ToLower(desc)
	for _, s := range []string{"multiresourcescope", "multiple resource servers", "several resource servers", "more than one resource server"} {
		if strings.Contains(d, s) {
			return true
		}
	}
	return false
}

// maxRetryAfter caps a server's Retry-After, so that one bad header
// cannot park a profile for days.
const maxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay
// seconds or an HTTP date, relative to now. It returns 0 for an absent or
// invalid value or a date in the past, and caps the delay at one hour.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}
