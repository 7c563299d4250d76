package credproto

import (
	"errors"
	"io"
	"strings"

	"github.com/tokd/tokd/internal/jsonlite"
)

// DockerNotFound is what docker expects from a helper that has no
// credentials for a server (docker-credential-helpers' credentials.
// errCredentialsNotFoundMessage).
const DockerNotFound = "credentials not found in native keychain"

// maxDockerInput bounds the server URL docker writes on stdin.
const maxDockerInput = 64 << 10

// DockerCredential is the answer to a get.
type DockerCredential struct {
	ServerURL string `json:"ServerURL"`
	Username  string `json:"Username"`
	Secret    string `json:"Secret"`
}

// AppendJSON appends c as json.Marshal writes it, the answer docker
// reads from a helper's get.
func (c DockerCredential) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"ServerURL":`...)
	dst = jsonlite.AppendString(dst, c.ServerURL)
	dst = append(dst, `,"Username":`...)
	dst = jsonlite.AppendString(dst, c.Username)
	dst = append(dst, `,"Secret":`...)
	dst = jsonlite.AppendString(dst, c.Secret)
	return append(dst, '}')
}

// ReadDockerServer reads the server URL docker writes to a helper's stdin.
func ReadDockerServer(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxDockerInput+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxDockerInput {
		return "", errors.New("server URL longer than 64 KiB")
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", errors.New("no server URL on stdin")
	}
	return s, nil
}

// DockerHub is the name under which docker.registries name Docker Hub,
// which docker itself calls DockerHubServer.
const DockerHub = "docker.io"

// DockerHubServer is docker's server URL for Docker Hub: what docker login
// stores, and the only key docker looks Hub's credentials up by among all
// of a helper's (registry.ResolveAuthConfig, for the official index).
const DockerHubServer = "https://index.docker.io/v1/"

// DockerRegistry reduces what docker calls a server URL to the
// host[:port] that docker.registries name: "https://host:5000/v1/" and
// "host:5000" both give "host:5000"; the host is lower-cased, and Docker
// Hub's names (index.docker.io, registry-1.docker.io) give DockerHub.
func DockerRegistry(server string) string {
	s := strings.TrimSpace(server)
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	host, _, _ := strings.Cut(s, "/")
	host = strings.ToLower(host)
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		return DockerHub
	}
	return host
}
