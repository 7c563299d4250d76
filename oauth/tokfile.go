package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// MaxTokFileBytes bounds a token file read by ParseTokFile.
const MaxTokFileBytes = 1 << 20

// ParseTokFile reads the token file that the OCI Console's "Download
// token" button saves (tokens<n>.tok): a JSON object holding the access
// token under "app_access_token". Unknown keys are tolerated; a string
// under a key ending in "refresh_token" is taken as the refresh token.
// Both tokens must be printable ASCII (RFC 6749 VSCHAR).
// The expiry comes from the access token's exp claim; a token that has
// expired at now is refused.
func ParseTokFile(data []byte, now time.Time) (*Token, error) {
	if len(data) > MaxTokFileBytes {
		return nil, fmt.Errorf("token file larger than %d bytes", MaxTokFileBytes)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("token file is not a JSON object: %w", err)
	}
	if fields == nil {
		return nil, errors.New("token file is not a JSON object")
	}
	raw, ok := fields["app_access_token"]
	if !ok {
		return nil, errors.New(`token file has no "app_access_token"`)
	}
	var access string
	if err := json.Unmarshal(raw, &access); err != nil || access == "" {
		return nil, errors.New(`token file's "app_access_token" is not a non-empty string`)
	}
	if !isVSCHAR(access) {
		return nil, errors.New(`token file's "app_access_token" holds characters outside VSCHAR (RFC 6749 A.12)`)
	}
	iat, exp, err := jwtTimes(access)
	if err != nil {
		return nil, fmt.Errorf("token file's app_access_token: %w", err)
	}
	if !now.Before(exp) {
		return nil, fmt.Errorf("token file's access token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	tok := &Token{AccessToken: access, TokenType: "Bearer", IssuedAt: now, Expiry: exp}
	if !iat.IsZero() && !iat.After(now) {
		tok.IssuedAt = iat
	}
	// Look at keys in a fixed order so that a file with several
	// candidates always yields the same one.
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if strings.HasSuffix(strings.ToLower(k), "refresh_token") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		var rt string
		if json.Unmarshal(fields[k], &rt) == nil && rt != "" {
			if !isVSCHAR(rt) {
				return nil, fmt.Errorf("token file's %.40q holds characters outside VSCHAR (RFC 6749 A.17)", k)
			}
			tok.RefreshToken = rt
			break
		}
	}
	return tok, nil
}
