package credproto

import (
	"encoding/json"
	"fmt"
	"time"
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
	var info struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(execInfo), &info); err != nil {
		return "", fmt.Errorf("KUBERNETES_EXEC_INFO is not JSON: %w", err)
	}
	switch info.APIVersion {
	case KubeV1, KubeV1beta1:
		return info.APIVersion, nil
	case "":
		return KubeV1, nil
	}
	return "", fmt.Errorf("KUBERNETES_EXEC_INFO asks for apiVersion %q; tokctl speaks %s and %s", info.APIVersion, KubeV1, KubeV1beta1)
}

// execCredential is the ExecCredential kubectl reads on stdout.
type execCredential struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Status     execCredentialSt `json:"status"`
}

type execCredentialSt struct {
	Token               string `json:"token"`
	ExpirationTimestamp string `json:"expirationTimestamp"`
}

// KubeExecCredential returns the ExecCredential JSON for a token. The
// expirationTimestamp is what client-go caches the token until.
func KubeExecCredential(apiVersion, token string, expiry time.Time) ([]byte, error) {
	return json.Marshal(execCredential{
		APIVersion: apiVersion,
		Kind:       "ExecCredential",
		Status: execCredentialSt{
			Token:               token,
			ExpirationTimestamp: expiry.UTC().Format(time.RFC3339),
		},
	})
}
