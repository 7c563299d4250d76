package main

import (
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/internal/jsonlite"
)

// tokctl's JSON output, written as a json.Encoder writes it (with
// SetIndent("", "  ") for --json), so that the output is what it was
// when tokctl used encoding/json; TestJSONAsEncodingJSON compares them.

// appendTokenJSON appends tok as compact JSON.
func appendTokenJSON(b []byte, tok *apitype.Token) ([]byte, error) {
	b = append(b, `{"profile":`...)
	b = jsonlite.AppendString(b, tok.Profile)
	b = append(b, `,"access_token":`...)
	b = jsonlite.AppendString(b, tok.AccessToken)
	b = append(b, `,"token_type":`...)
	b = jsonlite.AppendString(b, tok.TokenType)
	b = append(b, `,"expires_at":`...)
	b, err := jsonlite.AppendTime(b, tok.ExpiresAt)
	return append(b, '}'), err
}

// appendStatusJSON appends st as compact JSON, leaving out the empty
// fields that apitype.ProfileStatus marks omitempty.
func appendStatusJSON(b []byte, st *apitype.Status) ([]byte, error) {
	b = append(b, `{"version":`...)
	b = jsonlite.AppendString(b, st.Version)
	b = append(b, `,"profiles":`...)
	if st.Profiles == nil {
		return append(b, "null}"...), nil
	}
	b = append(b, '[')
	for i := range st.Profiles {
		p := &st.Profiles[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"profile":`...)
		b = jsonlite.AppendString(b, p.Profile)
		b = append(b, `,"state":`...)
		b = jsonlite.AppendString(b, p.State)
		var err error
		if b, err = appendTimeField(b, `,"expires_at":`, p.ExpiresAt); err != nil {
			return b, err
		}
		if b, err = appendTimeField(b, `,"last_refresh":`, p.LastRefresh); err != nil {
			return b, err
		}
		if b, err = appendTimeField(b, `,"next_refresh":`, p.NextRefresh); err != nil {
			return b, err
		}
		b = append(b, `,"refresh_token":`...)
		b = jsonlite.AppendBool(b, p.RefreshToken)
		if p.LastError != "" {
			b = append(b, `,"last_error":`...)
			b = jsonlite.AppendString(b, p.LastError)
		}
		if b, err = appendTimeField(b, `,"last_error_at":`, p.LastErrorAt); err != nil {
			return b, err
		}
		if p.StoreError != "" {
			b = append(b, `,"store_error":`...)
			b = jsonlite.AppendString(b, p.StoreError)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// appendTimeField appends an omitempty *time.Time member, key included.
func appendTimeField(b []byte, key string, t *time.Time) ([]byte, error) {
	if t == nil {
		return b, nil
	}
	return jsonlite.AppendTime(append(b, key...), *t)
}

// appendDockerListJSON appends list as compact JSON, its keys sorted as
// encoding/json sorts a map's.
func appendDockerListJSON(b []byte, list apitype.DockerList) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	keys := make([]string, 0, len(list))
	for k := range list {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonlite.AppendString(b, k)
		b = append(b, ':')
		b = jsonlite.AppendString(b, list[k])
	}
	return append(b, '}')
}

// writeIndented writes compact JSON indented by two spaces, and a newline.
func writeIndented(w io.Writer, compact []byte) error {
	out := jsonlite.Indent(make([]byte, 0, len(compact)*5/4+64), compact, "  ")
	_, err := w.Write(append(out, '\n'))
	return err
}

// pad returns s followed by spaces to a width of n runes, as fmt's %-Ns.
func pad(s string, n int) string {
	for w := utf8.RuneCountInString(s); w < n; w++ {
		s += " "
	}
	return s
}
