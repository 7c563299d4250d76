package credproto

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseGitRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *GitRequest
		wantErr string
	}{
		{
			name: "git 2.39 get",
			in:   "protocol=https\nhost=git.example.com\n\n",
			want: &GitRequest{Protocol: "https", Host: "git.example.com"},
		},
		{
			name: "path, port, username, EOF without blank line",
			in:   "protocol=https\nhost=git.example.com:8443\npath=team/repo.git\nusername=bob",
			want: &GitRequest{Protocol: "https", Host: "git.example.com:8443", Path: "team/repo.git", Username: "bob"},
		},
		{
			name: "capabilities and challenges of newer git",
			in:   "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=h\nwwwauth[]=Bearer realm=\"x\"\nwwwauth[]=Basic\n\n",
			want: &GitRequest{Protocol: "https", Host: "h", Capabilities: []string{"authtype", "state"},
				WWWAuth: []string{`Bearer realm="x"`, "Basic"}},
		},
		{
			// git-credential(1): "An empty multi-valued attribute (key[]=)
			// acts to clear any previous entries and reset the list."
			name: "an empty multi-valued attribute clears the list",
			in:   "capability[]=authtype\ncapability[]=\nprotocol=https\nhost=h\nwwwauth[]=Bearer\nwwwauth[]=\nwwwauth[]=Basic\n\n",
			want: &GitRequest{Protocol: "https", Host: "h", WWWAuth: []string{"Basic"}},
		},
		{
			name: "unknown attributes ignored, CRLF tolerated",
			in:   "protocol=https\r\nhost=h\r\npassword_expiry_utc=1\r\noauth_refresh_token=x\r\nfuture=thing\r\n\r\n",
			want: &GitRequest{Protocol: "https", Host: "h"},
		},
		{
			name: "erase carries the refused secret",
			in:   "protocol=https\nhost=h\nusername=oauth2\npassword=tok\n\n",
			want: &GitRequest{Protocol: "https", Host: "h", Username: "oauth2", Password: "tok"},
		},
		{
			name: "url split into parts",
			in:   "url=https://alice@git.example.com:444/team/repo.git\n",
			want: &GitRequest{Protocol: "https", Host: "git.example.com:444", Path: "team/repo.git", Username: "alice"},
		},
		// A url attribute as git's credential_from_url reads it: the
		// request so far is cleared, the host ends at '/', '?' or '#',
		// user, password, host and path are percent-decoded, and the
		// path loses its leading and trailing slashes.
		{
			name: "url with user and password",
			in:   "url=https://alice:s3cr3t@git.example.com/team/repo.git\n",
			want: &GitRequest{Protocol: "https", Host: "git.example.com", Path: "team/repo.git", Username: "alice", Password: "s3cr3t"},
		},
		{
			name: "url percent-decoded",
			in:   "url=https://a%40b@git.example.com/my%20repo%23x.git\n",
			want: &GitRequest{Protocol: "https", Host: "git.example.com", Path: "my repo#x.git", Username: "a@b"},
		},
		{
			name: "url slashes trimmed",
			in:   "url=https://h//team//repo.git//\n",
			want: &GitRequest{Protocol: "https", Host: "h", Path: "team//repo.git"},
		},
		{
			name: "url host ends at '?' or '#'",
			in:   "url=https://h?u=x@evil.example\n",
			want: &GitRequest{Protocol: "https", Host: "h", Path: "?u=x@evil.example"},
		},
		{
			name: "url clears what came before",
			in:   "username=bob\nhost=other\npath=x\nurl=https://h\n",
			want: &GitRequest{Protocol: "https", Host: "h"},
		},
		{
			name: "lines after the blank line are not read",
			in:   "protocol=https\nhost=a\n\nhost=b\n",
			want: &GitRequest{Protocol: "https", Host: "a"},
		},
		{name: "no equals sign", in: "protocol https\n", wantErr: "without '='"},
		{name: "NUL byte", in: "host=a\x00b\n", wantErr: "NUL"},
		{name: "url without scheme", in: "url=git.example.com/x\n", wantErr: "without a scheme"},
		{name: "line too long", in: "path=" + strings.Repeat("a", MaxGitLine) + "\n", wantErr: "longer than 65535 bytes"},
		{name: "too many lines", in: strings.Repeat("x=y\n", maxGitLines+1), wantErr: "longer than 1024 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseGitRequest(strings.NewReader(tt.in))
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
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitRequestURL(t *testing.T) {
	tests := []struct {
		req  GitRequest
		want string
	}{
		{GitRequest{Protocol: "https", Host: "h"}, "https://h/"},
		{GitRequest{Protocol: "https", Host: "h:8443", Path: "team/r.git"}, "https://h:8443/team/r.git"},
		{GitRequest{Protocol: "http", Host: "h", Path: "/x"}, "http://h/x"},
	}
	for _, tt := range tests {
		if got := tt.req.URL(); got != tt.want {
			t.Errorf("URL() = %q, want %q", got, tt.want)
		}
	}
}

// TestGitRequestURLPath: git sends the path decoded (a repository URL's
// %23 arrives as '#'), and the daemon reads URL() with net/url, so a path
// must come through whole: not cut at '#' or '?', not refused for a '%'.
func TestGitRequestURLPath(t *testing.T) {
	for _, path := range []string{
		"team/repo.git", "team/a#b.git", "team/a?b=c/repo.git", "team/100%/repo.git", "team/%41",
		"team/my repo.git", "tëam/ré po.git", "team/a\tb", "team/a\x7fb", "team/\x01",
	} {
		req := GitRequest{Protocol: "https", Host: "git.example.com:8443", Path: path}
		u, err := url.Parse(req.URL())
		if err != nil {
			t.Errorf("path %q: URL() = %q: %v", path, req.URL(), err)
			continue
		}
		if u.Scheme != "https" || u.Host != "git.example.com:8443" || u.Path != "/"+path || u.RawQuery != "" || u.Fragment != "" {
			t.Errorf("path %q: URL() = %q reads as scheme %q host %q path %q query %q fragment %q",
				path, req.URL(), u.Scheme, u.Host, u.Path, u.RawQuery, u.Fragment)
		}
	}
}

func TestWriteGitAnswer(t *testing.T) {
	exp := time.Unix(1800000000, 0)
	a := GitAnswer{Username: "oauth2", Token: "tok", Expiry: exp}
	const (
		basic  = "username=oauth2\npassword=tok\npassword_expiry_utc=1800000000\n"
		bearer = "capability[]=authtype\nauthtype=Bearer\ncredential=tok\nephemeral=true\npassword_expiry_utc=1800000000\n"
	)
	tests := []struct {
		name string
		req  *GitRequest
		want string
	}{
		{name: "username and password", req: &GitRequest{}, want: basic},
		{name: "authtype capability, Bearer challenge", req: &GitRequest{Capabilities: []string{"state", "authtype"},
			WWWAuth: []string{`Bearer realm="x"`}},
			want: bearer},
		// git 2.46+ announces authtype on every HTTP request: a server
		// that asks for Basic must get username and password.
		{name: "authtype capability, Basic challenge", req: &GitRequest{Capabilities: []string{"authtype", "state"},
			WWWAuth: []string{`Basic realm="git"`}},
			want: basic},
		{name: "authtype capability, no challenge", req: &GitRequest{Capabilities: []string{"authtype"}},
			want: basic},
		{name: "Bearer among several challenges", req: &GitRequest{Capabilities: []string{"authtype"},
			WWWAuth: []string{`Negotiate`, `Basic realm="a, Bearer b", charset="UTF-8", bearer error="invalid_token"`}},
			want: bearer},
		{name: "Bearer only inside a quoted string or as a parameter", req: &GitRequest{Capabilities: []string{"authtype"},
			WWWAuth: []string{`Basic realm="Bearer"`, `Basic realm="x", Bearer=1`, `Basic bearer = "y"`, `Bearerx`}},
			want: basic},
		{name: "Bearer challenge without the capability", req: &GitRequest{WWWAuth: []string{"Bearer"}},
			want: basic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteGitAnswer(&b, tt.req, a); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriteGitAnswerRefusesLineBreaks holds WriteGitAnswer to git's rule
// that a value holds no newline or NUL: a token that did would end its
// line early and inject attributes of its own (git itself dies on such a
// value in credential_write_item).
func TestWriteGitAnswerRefusesLineBreaks(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  *GitRequest
		a    GitAnswer
	}{
		{"newline in the token", &GitRequest{}, GitAnswer{Username: "oauth2", Token: "s3cr3t\nusername=evil"}},
		{"NUL in the token", &GitRequest{}, GitAnswer{Username: "oauth2", Token: "s3cr3t\x00"}},
		{"newline in the username", &GitRequest{}, GitAnswer{Username: "oauth2\nquit=1", Token: "s3cr3t"}},
		{"newline in a Bearer credential", &GitRequest{Capabilities: []string{"authtype"}, WWWAuth: []string{"Bearer"}},
			GitAnswer{Username: "oauth2", Token: "s3cr3t\nephemeral=false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteGitAnswer(&b, tt.req, tt.a)
			if err == nil || b.Len() != 0 {
				t.Fatalf("WriteGitAnswer wrote %q, err %v; want nothing and an error", b.String(), err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error %q shows the token", err)
			}
		})
	}
}

func TestKubeAPIVersion(t *testing.T) {
	tests := []struct {
		info, want, wantErr string
	}{
		{info: "", want: KubeV1},
		{info: `{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}`, want: KubeV1beta1},
		{info: `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}`, want: KubeV1},
		{info: `{"apiVersion":"client.authentication.k8s.io/v1alpha1"}`, wantErr: "v1alpha1"},
		{info: `not json`, wantErr: "not JSON"},
	}
	for _, tt := range tests {
		got, err := KubeAPIVersion(tt.info)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("KubeAPIVersion(%q) err = %v, want %q", tt.info, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("KubeAPIVersion(%q) = %q, %v; want %q", tt.info, got, err, tt.want)
		}
	}
}

func TestKubeExecCredential(t *testing.T) {
	out, err := KubeExecCredential(KubeV1beta1, "tok", time.Date(2026, 11, 25, 13, 0, 0, 0, time.FixedZone("x", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": KubeV1beta1,
		"kind":       "ExecCredential",
		"status":     map[string]any{"token": "tok", "expirationTimestamp": "2026-11-25T12:00:00Z"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExecCredential (-want +got):\n%s", diff)
	}
}

func TestDockerRegistry(t *testing.T) {
	tests := map[string]string{
		"registry.example.com":              "registry.example.com",
		"https://Registry.Example.com/v1/":  "registry.example.com",
		"http://localhost:5000":             "localhost:5000",
		"registry.example.com:5000/ns/repo": "registry.example.com:5000",
		"  registry.example.com\n":          "registry.example.com",
		"https://index.docker.io/v1/":       "docker.io",
		"registry-1.docker.io":              "docker.io",
		"docker.io":                         "docker.io",
	}
	for in, want := range tests {
		if got := DockerRegistry(in); got != want {
			t.Errorf("DockerRegistry(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadDockerServer(t *testing.T) {
	if got, err := ReadDockerServer(strings.NewReader("https://r.example.com\n")); err != nil || got != "https://r.example.com" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := ReadDockerServer(strings.NewReader("\n")); err == nil {
		t.Error("empty input accepted")
	}
	if _, err := ReadDockerServer(strings.NewReader(strings.Repeat("a", maxDockerInput+1))); err == nil {
		t.Error("oversized input accepted")
	}
}

func FuzzParseGitRequest(f *testing.F) {
	f.Add("protocol=https\nhost=h\npath=p\n\n")
	f.Add("url=https://u@h:1/p\ncapability[]=authtype\n")
	f.Add("wwwauth[]=Bearer\n\nx")
	f.Fuzz(func(t *testing.T, in string) {
		req, err := ParseGitRequest(strings.NewReader(in))
		if err != nil {
			if req != nil || err.Error() == "" {
				t.Fatalf("bad error result: %v, %v", req, err)
			}
			return
		}
		for _, v := range []string{req.Protocol, req.Host, req.Path, req.Username} {
			if strings.ContainsAny(v, "\n\x00") {
				t.Fatalf("attribute holds a newline or NUL: %q", v)
			}
		}
		var b bytes.Buffer
		if err := WriteGitAnswer(&b, req, GitAnswer{Username: "u", Token: "t"}); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDockerRegistry(f *testing.F) {
	f.Add("https://registry.example.com:5000/v2/")
	f.Add("registry.example.com")
	f.Fuzz(func(t *testing.T, in string) {
		got := DockerRegistry(in)
		if strings.Contains(got, "/") || strings.Contains(got, "://") || got != strings.ToLower(got) {
			t.Fatalf("DockerRegistry(%q) = %q", in, got)
		}
	})
}

// FuzzKubeAPIVersion holds KubeAPIVersion's reading of
// KUBERNETES_EXEC_INFO to what json.Unmarshal reads.
func FuzzKubeAPIVersion(f *testing.F) {
	f.Add(`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}`)
	f.Add(`{"APIVERSION":"client.authentication.k8s.io/v1","spec":{"cluster":{"config":null}}}`)
	f.Add(`{"apiVersion":null}`)
	f.Add(`{"apiVersion":1}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, info string) {
		got, err := KubeAPIVersion(info)
		if info == "" {
			return
		}
		var want struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if jerr := json.Unmarshal([]byte(info), &want); jerr != nil {
			if err == nil {
				t.Fatalf("KubeAPIVersion(%q) = %q, encoding/json: %v", info, got, jerr)
			}
			return
		}
		switch want.APIVersion {
		case "", KubeV1:
			if got != KubeV1 || err != nil {
				t.Fatalf("KubeAPIVersion(%q) = %q, %v; want %s", info, got, err, KubeV1)
			}
		case KubeV1beta1:
			if got != KubeV1beta1 || err != nil {
				t.Fatalf("KubeAPIVersion(%q) = %q, %v; want %s", info, got, err, KubeV1beta1)
			}
		default:
			if err == nil || !strings.Contains(err.Error(), strconv.Quote(want.APIVersion)) {
				t.Fatalf("KubeAPIVersion(%q) = %q, %v; want an error naming %q", info, got, err, want.APIVersion)
			}
		}
	})
}

// FuzzJSONOutput holds the JSON credproto writes to what json.Marshal
// writes for the same values.
func FuzzJSONOutput(f *testing.F) {
	f.Add("client.authentication.k8s.io/v1", "eyJ.a.b", int64(1800000000), "https://r.example.com", "oauth2")
	f.Add("<&>", "\"\\\x00\u2028\xff", int64(-62135596800), "", "é")
	f.Fuzz(func(t *testing.T, apiVersion, token string, unix int64, server, user string) {
		expiry := time.Unix(unix, 0)
		if y := expiry.UTC().Year(); y < 0 || y > 9999 {
			return // RFC 3339 has four-digit years
		}
		got, err := KubeExecCredential(apiVersion, token, expiry)
		if err != nil {
			t.Fatal(err)
		}
		type status struct {
			Token               string `json:"token"`
			ExpirationTimestamp string `json:"expirationTimestamp"`
		}
		want, err := json.Marshal(struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Status     status `json:"status"`
		}{apiVersion, "ExecCredential", status{token, expiry.UTC().Format(time.RFC3339)}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("KubeExecCredential:\n got %s\nwant %s", got, want)
		}

		dc := DockerCredential{ServerURL: server, Username: user, Secret: token}
		want, err = json.Marshal(dc)
		if err != nil {
			t.Fatal(err)
		}
		if got := dc.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("DockerCredential.AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}
