package credproto

import (
	"errors"
	"strconv"
	"time"

	"github.com/tokd/tokd/internal/jsonlite"
)

// Exec credential API versions (client.authentication.k8s.io).
const (
	KubeV1      = "client.authentication.k8s.io/v1"
	KubeV1beta1 = "client.authentication.k8s.io/v1beta1"
)

// KubeAPIVersion returns the apiVersion kubectl expects, read from the
// KUBERNETES_EXEC_INFO it passes (v1 when absent).
func KubeAPIVersion(execInfo string) (string, error) {
	if execInfo == "" {
		return KubeV1, nil
	}
	// Read as json.Unmarshal would read it into a struct with the string
	// fields apiVersion and kind (FuzzKubeAPIVersion compares them).
	var apiVersion, kind string
	err := jsonlite.Decode([]byte(execInfo), func(d *jsonlite.Decoder) error {
		return d.Object("ExecCredential", func(key string) error {
			switch jsonlite.Fold(key) {
			case "APIVERSION":
				return d.String(&apiVersion)
			case "KIND":
				return d.String(&kind)
			}
			return d.Skip()
		})
	})
	if err != nil {
		return "", errors.New("KUBERNETES_EXEC_INFO is not JSON: " + err.Error())
	}
	switch apiVersion {
	case KubeV1, KubeV1beta1:
		return apiVersion, nil
	case "":
		return KubeV1, nil
	}
	return "", errors.New("KUBERNETES_EXEC_INFO asks for apiVersion " + strconv.Quote(apiVersion) + "; tokctl speaks " + KubeV1 + " and " + KubeV1beta1)
}

// KubeExecCredential returns the ExecCredential JSON for a token, as
// json.Marshal writes it:
//
//	{"apiVersion":…,"kind":"ExecCredential","status":{"token":…,"expirationTimestamp":…}}
//
// The expirationTimestamp is what client-go caches the token until.
func KubeExecCredential(apiVersion, token string, expiry time.Time) ([]byte, error) {
	b := make([]byte, 0, 128+len(token))
	b = append(b, `{"apiVersion":`...)
	b = jsonlite.AppendString(b, apiVersion)
	b = append(b, `,"kind":"ExecCredential","status":{"token":`...)
	b = jsonlite.AppendString(b, token)
	b = append(b, `,"expirationTimestamp":`...)
	b = jsonlite.AppendString(b, expiry.UTC().Format(time.RFC3339))
	return append(b, "}}"...), nil
}
