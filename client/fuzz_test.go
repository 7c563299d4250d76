package client

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/internal/jsonlite"
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

// FuzzDecodeAnswers holds the decoders of tokd's answers to encoding/json:
// for any input, each decodes the same value as json.Unmarshal into the
// same apitype type, or both fail.
func FuzzDecodeAnswers(f *testing.F) {
	for _, seed := range []string{
		`{"profile":"demo","access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2030-06-01T13:00:00.123456789Z"}`,
		`{"profile":"demo","access_token":"eyJ.a.b","token_type":"Bearer","expires_at":"2030-06-01T13:00:00Z","username":"oauth2","server_url":"https://git.example.com/"}`,
		`{"version":"1","profiles":[{"profile":"a","state":"valid","expires_at":"2030-06-01T13:00:00Z","last_refresh":"2030-06-01T12:00:00Z","next_refresh":"2030-06-01T12:40:00Z","refresh_token":true},` +
			`{"profile":"b","state":"import-needed","last_error":"x","last_error_at":"2030-06-01T12:00:00+02:00","store_error":"read-only"}]}`,
		`{"version":"1","profiles":[]}`,
		`{"registry.example.com":"oauth2","docker.io":"u"}`,
		`{"error":"no profile \"nope\""}`,
		`{"PROFILE":"x","Access_Token":"\u0041","ſtate":"s","expires_at":null,"refresh_token":null,"profiles":null}`,
		`{"profiles":[{"profile":"a"},{"profile":"b"}],"profiles":[{"state":"s"}],"profiles":[{},{}]}`,
		`{"expires_at":"2030-06-01T13:00:00Z","expires_at":"2030-06-01T13:00:00.5+01:00"}`,
		`null`, `[]`, `{"profile":1}`, `{"expires_at":"2030-13-01T00:00:00Z"}`, `{"refresh_token":"true"}`,
		"{\"profile\":\"\xff\"}", `{"a":[{"b":[]}],"profile":"p"} `, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		compareDecoders(t, in)
	})
}

// compareDecoders decodes in with each answer decoder and with
// json.Unmarshal and fails the test if they disagree.
func compareDecoders(t *testing.T, in []byte) {
	t.Helper()
	check := func(name string, got, want any, err, wantErr error) {
		t.Helper()
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%s of %q: error %v, encoding/json error %v", name, in, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s of %q:\n got %#v\nwant %#v (encoding/json)", name, in, got, want)
		}
	}
	{
		var got, want apitype.Token
		err := jsonlite.Decode(in, func(d *jsonlite.Decoder) error { return decodeToken(d, &got) })
		check("Token", got, want, err, json.Unmarshal(in, &want))
	}
	{
		var got, want apitype.Credential
		err := jsonlite.Decode(in, func(d *jsonlite.Decoder) error { return decodeCredential(d, &got) })
		check("Credential", got, want, err, json.Unmarshal(in, &want))
	}
	{
		var got, want apitype.Status
		err := jsonlite.Decode(in, func(d *jsonlite.Decoder) error { return decodeStatus(d, &got) })
		check("Status", got, want, err, json.Unmarshal(in, &want))
	}
	{
		var got, want apitype.DockerList
		err := jsonlite.Decode(in, func(d *jsonlite.Decoder) error { return decodeDockerList(d, &got) })
		check("DockerList", got, want, err, json.Unmarshal(in, &want))
	}
	{
		var got, want apitype.ErrorResponse
		err := jsonlite.Decode(in, func(d *jsonlite.Decoder) error { return decodeError(d, &got) })
		check("ErrorResponse", got, want, err, json.Unmarshal(in, &want))
	}
}

// TestDecodersKnowEveryField fills every field of each answer type,
// encodes it with encoding/json and decodes it with the client's decoder:
// a field added to apitype and not to the decoder fails here.
func TestDecodersKnowEveryField(t *testing.T) {
	for _, v := range []any{&apitype.Token{}, &apitype.Credential{}, &apitype.Status{}, &apitype.ErrorResponse{}} {
		fill(reflect.ValueOf(v).Elem(), 1)
		in, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(in), `"profiles":[{`) && strings.Contains(string(in), `"profiles"`) {
			t.Fatalf("fill left profiles empty: %s", in)
		}
		compareDecoders(t, in)
	}
}

// fill sets every field of v to a value that is not its zero value.
func fill(v reflect.Value, n int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strconv.Itoa(n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), n+1)
		fill(v.Index(1), n+2)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2030, 6, 1, 13, n, 0, n, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), n+i)
		}
	}
}

// FuzzEscape holds pathEscape and queryEscape to net/url's PathEscape and
// QueryEscape.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"ci.bot", "a/b c", "https://git.example.com:8443/team/r.git?x=1&y=2#f", "$&+,/:;=?@~-_.", "é\x00\xff%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := pathEscape(s), url.PathEscape(s); got != want {
			t.Errorf("pathEscape(%q) = %q, url.PathEscape %q", s, got, want)
		}
		if got, want := queryEscape(s), url.QueryEscape(s); got != want {
			t.Errorf("queryEscape(%q) = %q, url.QueryEscape %q", s, got, want)
		}
	})
}
