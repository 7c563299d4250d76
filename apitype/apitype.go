// Package apitype holds the wire types of tokd's socket API, shared by
// the daemon and by tokctl's client.
//
// The API is HTTP/1.1 with JSON bodies over a Unix socket, every path
// under PathPrefix, every request and response carrying VersionHeader.
// Errors are ErrorResponse bodies with a meaningful status code. Fields
// are only ever added, so --json output built from these types is stable.
//
//	GET    /v1/token/{profile}          Token
//	POST   /v1/token/{profile}/refresh  Token (refreshed now)
//	POST   /v1/token/{profile}/import   Token (body: a tokens<n>.tok file)
//	DELETE /v1/token/{profile}          204 (token forgotten)
//	GET    /v1/status                   Status
//	GET    /v1/git?url=URL              Credential for the profile whose git.urls cover URL
//	DELETE /v1/git?url=URL              204 (that profile's token forgotten)
//	POST   /v1/git/refused?url=URL      GitRefusal → 204 (that profile's token forgotten if it is the refused secret)
//	GET    /v1/docker?server=SERVER     Credential for the profile whose docker.registries name SERVER
//	GET    /v1/docker/list              DockerList
package apitype

import (
	"strconv"
	"time"
)

// Version is the API version; tokctl refuses a daemon that speaks another.
const Version = "1"

// VersionHeader carries Version on every request and response.
const VersionHeader = "Tokd-Api-Version"

// PathPrefix is the versioned prefix of every API path.
const PathPrefix = "/v1/"

// MaxRequestBody bounds a request body (an imported token file).
const MaxRequestBody = 1 << 20

// Token is a profile's access token as served to a caller.
type Token struct {
	Profile     string    `json:"profile"`
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// ProfileStatus is one profile's state, without any token.
type ProfileStatus struct {
	Profile      string     `json:"profile"`
	State        string     `json:"state"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	LastRefresh  *time.Time `json:"last_refresh,omitempty"`
	NextRefresh  *time.Time `json:"next_refresh,omitempty"`
	RefreshToken bool       `json:"refresh_token"` // whether one is held
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	// StoreError says why the token held could not be saved: it is
	// served from memory and would not survive a restart.
	StoreError string `json:"store_error,omitempty"`
}

// Status lists the profiles the caller may see.
type Status struct {
	Version  string          `json:"version"`
	Profiles []ProfileStatus `json:"profiles"`
}

// Credential is a token with the user name a helper answers with, for
// git and docker.
type Credential struct {
	Token
	Username string `json:"username"`
	// ServerURL is the git URL prefix or docker registry that matched.
	ServerURL string `json:"server_url"`
}

// GitRefusal is the body of POST /v1/git/refused: the secret git says
// the server refused. The token is forgotten only if it is that secret.
type GitRefusal struct {
	Refused string `json:"refused"`
}

// DockerList maps each docker registry the caller may use to its user name.
type DockerList map[string]string

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// DefaultSocket returns the socket path used when neither --socket nor
// TOKD_SOCKET names one: /run/tokd/tokd.sock for root (uid 0), else
// $XDG_RUNTIME_DIR/tokd/tokd.sock, or /run/user/UID/tokd/tokd.sock when
// XDG_RUNTIME_DIR is unset.
func DefaultSocket(uid int, xdgRuntimeDir string) string {
	if uid == 0 {
		return "/run/tokd/tokd.sock"
	}
	if xdgRuntimeDir == "" {
		xdgRuntimeDir = "/run/user/" + strconv.Itoa(uid)
	}
	return xdgRuntimeDir + "/tokd/tokd.sock"
}
