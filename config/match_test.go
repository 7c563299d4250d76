package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchGit(t *testing.T) {
	cfg := &Config{Profiles: map[string]*Profile{
		"team":   {Name: "team", Git: &Git{URLs: []string{"https://git.example.com/team/"}}},
		"infra":  {Name: "infra", Git: &Git{URLs: []string{"https://git.example.com/team/infra"}}},
		"other":  {Name: "other", Git: &Git{URLs: []string{"https://other.example.com:8443/", "http://plain.example.com/"}}},
		"ported": {Name: "ported", Git: &Git{URLs: []string{"http://plain.example.com:80/x/y/"}}},
		"none":   {Name: "none"},
	}}
	tests := []struct {
		name string
		url  string
		want []string // profile names, best first
	}{
		{"prefix", "https://git.example.com/team/app.git", []string{"team"}},
		{"longest prefix first", "https://git.example.com/team/infra/repo.git", []string{"infra", "team"}},
		{"exact path", "https://git.example.com/team/infra", []string{"infra", "team"}},
		{"segment boundary", "https://git.example.com/team/infrastructure.git", []string{"team"}},
		{"no path: every profile on the host", "https://git.example.com/", []string{"infra", "team"}},
		{"other path on the host", "https://git.example.com/elsewhere/x.git", nil},
		{"host case and default port", "https://GIT.example.com:443/team/x", []string{"team"}},
		{"explicit port", "https://other.example.com:8443/x", []string{"other"}},
		{"wrong port", "https://other.example.com/x", nil},
		{"scheme must match", "http://git.example.com/team/x", nil},
		{"http when named", "http://plain.example.com/x", []string{"other"}},
		{"longest path wins, not longest URL", "http://plain.example.com/x/y/z.git", []string{"ported", "other"}},
		{"unknown host", "https://evil.example.com/team/x", nil},
		{"lookalike host", "https://git.example.com.evil.example/team/x", nil},
		{"not a URL", "git.example.com/team", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range cfg.MatchGit(tt.url) {
				got = append(got, m.Profile.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MatchGit(%q) (-want +got):\n%s", tt.url, diff)
			}
		})
	}
}

func TestGitURLKey(t *testing.T) {
	same := [][2]string{
		{"http://git.test:80/x/", "http://git.test/x/"},
		{"https://GIT.test:443/x", "https://git.test/x"},
	}
	for _, p := range same {
		if GitURLKey(p[0]) != GitURLKey(p[1]) {
			t.Errorf("GitURLKey(%q) = %q, GitURLKey(%q) = %q; want equal", p[0], GitURLKey(p[0]), p[1], GitURLKey(p[1]))
		}
	}
	if GitURLKey("http://git.test/x/") == GitURLKey("https://git.test/x/") {
		t.Error("http and https keys are equal")
	}
}

func TestMatchDocker(t *testing.T) {
	cfg := &Config{Profiles: map[string]*Profile{
		"a": {Name: "a", Docker: &Docker{Registries: []string{"registry.example.com", "localhost:5000"}}},
		"b": {Name: "b"},
	}}
	for reg, want := range map[string]string{"registry.example.com": "a", "localhost:5000": "a", "localhost": "", "other.example.com": ""} {
		got := ""
		if p := cfg.MatchDocker(reg); p != nil {
			got = p.Name
		}
		if got != want {
			t.Errorf("MatchDocker(%q) = %q, want %q", reg, got, want)
		}
	}
}
