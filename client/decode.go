package client

import (
	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/internal/jsonlite"
)

// The decoders of tokd's answers, one per apitype type, each reading what
// json.Unmarshal would read into that type (FuzzDecodeAnswers compares
// them): keys matched without regard to case, unknown keys skipped, null
// leaving a field as it is (and a *time.Time nil).

func decodeToken(d *jsonlite.Decoder, t *apitype.Token) error {
	return d.Object("apitype.Token", func(key string) error {
		if ok, err := tokenField(d, t, key); ok {
			return err
		}
		return d.Skip()
	})
}

// tokenField decodes the member key of an apitype.Token, and reports
// whether key is one of its fields.
func tokenField(d *jsonlite.Decoder, t *apitype.Token, key string) (bool, error) {
	switch jsonlite.Fold(key) {
	case "PROFILE":
		return true, d.String(&t.Profile)
	case "ACCESS_TOKEN":
		return true, d.String(&t.AccessToken)
	case "TOKEN_TYPE":
		return true, d.String(&t.TokenType)
	case "EXPIRES_AT":
		return true, d.Time(&t.ExpiresAt)
	}
	return false, nil
}

func decodeCredential(d *jsonlite.Decoder, c *apitype.Credential) error {
	return d.Object("apitype.Credential", func(key string) error {
		if ok, err := tokenField(d, &c.Token, key); ok {
			return err
		}
		switch jsonlite.Fold(key) {
		case "USERNAME":
			return d.String(&c.Username)
		case "SERVER_URL":
			return d.String(&c.ServerURL)
		}
		return d.Skip()
	})
}

func decodeStatus(d *jsonlite.Decoder, st *apitype.Status) error {
	return d.Object("apitype.Status", func(key string) error {
		switch jsonlite.Fold(key) {
		case "VERSION":
			return d.String(&st.Version)
		case "PROFILES":
			return jsonlite.Slice(d, "[]apitype.ProfileStatus", &st.Profiles, func(p *apitype.ProfileStatus) error {
				return decodeProfileStatus(d, p)
			})
		}
		return d.Skip()
	})
}

func decodeProfileStatus(d *jsonlite.Decoder, p *apitype.ProfileStatus) error {
	return d.Object("apitype.ProfileStatus", func(key string) error {
		switch jsonlite.Fold(key) {
		case "PROFILE":
			return d.String(&p.Profile)
		case "STATE":
			return d.String(&p.State)
		case "EXPIRES_AT":
			return d.TimePtr(&p.ExpiresAt)
		case "LAST_REFRESH":
			return d.TimePtr(&p.LastRefresh)
		case "NEXT_REFRESH":
			return d.TimePtr(&p.NextRefresh)
		case "REFRESH_TOKEN":
			return d.Bool(&p.RefreshToken)
		case "LAST_ERROR":
			return d.String(&p.LastError)
		case "LAST_ERROR_AT":
			return d.TimePtr(&p.LastErrorAt)
		case "STORE_ERROR":
			return d.String(&p.StoreError)
		}
		return d.Skip()
	})
}

func decodeDockerList(d *jsonlite.Decoder, list *apitype.DockerList) error {
	m := map[string]string(*list)
	err := jsonlite.StringMap(d, "apitype.DockerList", &m)
	*list = m
	return err
}

func decodeError(d *jsonlite.Decoder, e *apitype.ErrorResponse) error {
	return d.Object("apitype.ErrorResponse", func(key string) error {
		if jsonlite.Fold(key) == "ERROR" {
			return d.String(&e.Error)
		}
		return d.Skip()
	})
}
