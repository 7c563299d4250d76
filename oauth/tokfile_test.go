package oauth

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

func TestParseTokFile(t *testing.T) {
	iat := t0.Add(-10 * time.Minute)
	exp := t0.Add(50 * time.Minute)
	access := signedJWT(t, jwt.MapClaims{"sub": "ci-bot", "iat": iat.Unix(), "exp": exp.Unix()})
	noIat := signedJWT(t, jwt.MapClaims{"sub": "ci-bot", "exp": exp.Unix()})
	expired := signedJWT(t, jwt.MapClaims{"exp": t0.Add(-time.Second).Unix()})
	noExp := signedJWT(t, jwt.MapClaims{"sub": "x"})
	tests := []struct {
		name    string
		file    string
		want    *Token
		wantErr string
	}{
		{
			name: "console download",
			file: fmt.Sprintf(`{"app_access_token":%q}`, access),
			want: &Token{AccessToken: access, TokenType: "Bearer", IssuedAt: iat, Expiry: exp},
		},
		{
			name: "refresh token and unknown keys",
			file: fmt.Sprintf(`{"app_access_token":%q,"app_refresh_token":"rt-1","scope":"x","n":3}`, access),
			want: &Token{AccessToken: access, TokenType: "Bearer", RefreshToken: "rt-1", IssuedAt: iat, Expiry: exp},
		},
		{
			name: "plain refresh_token key",
			file: fmt.Sprintf(`{"refresh_token":"rt-2","app_access_token":%q}`, access),
			want: &Token{AccessToken: access, TokenType: "Bearer", RefreshToken: "rt-2", IssuedAt: iat, Expiry: exp},
		},
		{
			name: "non-string refresh token ignored",
			file: fmt.Sprintf(`{"app_access_token":%q,"a_refresh_token":7}`, access),
			want: &Token{AccessToken: access, TokenType: "Bearer", IssuedAt: iat, Expiry: exp},
		},
		{
			name: "no iat: issued at import",
			file: fmt.Sprintf(`{"app_access_token":%q}`, noIat),
			want: &Token{AccessToken: noIat, TokenType: "Bearer", IssuedAt: t0, Expiry: exp},
		},
		// base64url decoding skips line breaks, so this still parses as
		// a JWT; RFC 6749 A.12 forbids it in an access token.
		{name: "access token with a line break", file: fmt.Sprintf(`{"app_access_token":%q}`, access[:8]+"\n"+access[8:]), wantErr: "VSCHAR"},
		{name: "refresh token with a line break", file: fmt.Sprintf(`{"app_access_token":%q,"refresh_token":"r\nurl=x"}`, access), wantErr: "VSCHAR"},
		{name: "empty file", file: ``, wantErr: "not a JSON object"},
		{name: "array", file: `[1]`, wantErr: "not a JSON object"},
		{name: "null", file: `null`, wantErr: "not a JSON object"},
		{name: "missing key", file: `{"access_token":"x"}`, wantErr: `no "app_access_token"`},
		{name: "not a string", file: `{"app_access_token":5}`, wantErr: "not a non-empty string"},
		{name: "not a JWT", file: `{"app_access_token":"opaque"}`, wantErr: "not a JWT"},
		{name: "no exp", file: fmt.Sprintf(`{"app_access_token":%q}`, noExp), wantErr: "no exp claim"},
		{name: "expired", file: fmt.Sprintf(`{"app_access_token":%q}`, expired), wantErr: "expired at 2026-11-25T11:59:59Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokFile([]byte(tt.file), t0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseTokFile(f *testing.F) {
	access := signedJWT(f, jwt.MapClaims{"exp": t0.Add(time.Hour).Unix()})
	f.Add([]byte(fmt.Sprintf(`{"app_access_token":%q}`, access)))
	f.Add([]byte(fmt.Sprintf(`{"app_access_token":%q,"x_refresh_token":"r"}`, access)))
	f.Add([]byte(`{"app_access_token":"a.b.c"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseTokFile(data, t0)
		if err != nil {
			if tok != nil {
				t.Fatal("token returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if tok.AccessToken == "" || !tok.Expiry.After(t0) || tok.IssuedAt.After(t0) || tok.TokenType != "Bearer" {
			t.Fatalf("accepted an unusable token: %+v", tok)
		}
		if !isVSCHAR(tok.AccessToken) || (tok.RefreshToken != "" && !isVSCHAR(tok.RefreshToken)) {
			t.Fatalf("accepted a token outside VSCHAR: %q, %q", tok.AccessToken, tok.RefreshToken)
		}
	})
}

func FuzzParseErrorResponse(f *testing.F) {
	f.Add(400, "", []byte(`{"error":"invalid_grant","error_description":"x"}`))
	f.Add(429, "3", []byte(``))
	f.Add(503, "Wed, 25 Nov 2026 12:00:30 GMT", []byte(`<html>`))
	f.Add(500, "", []byte("{\"error\":\"\\u0000\"}"))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		e := ParseErrorResponse(status, h, body, t0)
		if e == nil {
			t.Fatal("nil error")
		}
		msg := e.Error()
		if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\n\r\x00") {
			t.Fatalf("message not a clean line: %q", msg)
		}
		if len(e.Code) > maxErrorText+3 || len(e.Description) > 2*maxErrorText+len(multiResourceHelp) {
			t.Fatalf("unbounded text: code %d bytes, description %d bytes", len(e.Code), len(e.Description))
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter %v out of bounds", e.RetryAfter)
		}
		if permanentCodes[e.Code] && e.Retryable && status != http.StatusTooManyRequests {
			t.Fatalf("%s marked retryable", e.Code)
		}
		if e.RateLimited() && !e.Retryable {
			t.Fatal("a rate-limit answer marked permanent")
		}
	})
}
