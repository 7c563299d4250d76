package main

// These tests hold tokctl's replacements of flag, encoding/json, fmt and
// os/exec to the packages they replace. The CLI itself is tested through
// the real binaries in cmd/ (testscript and the git, kubectl, docker and
// exec tests).

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
)

func TestFlagsAsFlagPackage(t *testing.T) {
	argvs := [][]string{
		{},
		{"demo"},
		{"--json", "demo"},
		{"-json", "demo"},
		{"--json=true", "demo"},
		{"-json=false", "demo"},
		{"--json=1", "--header=F", "demo"},
		{"--json=yes", "demo"},
		{"--json=", "demo"},
		{"--bogus", "demo"},
		{"-bogus=1"},
		{"--socket", "/run/x.sock", "get", "demo"},
		{"--socket=/run/x.sock", "get"},
		{"-socket="},
		{"--socket"},
		{"--env", "NAME", "demo", "--", "sh"},
		{"--env=", "demo"},
		{"--", "--json", "demo"},
		{"-", "demo"},
		{"---json"},
		{"--=x"},
		{"-=x"},
		{"-h"},
		{"--help", "demo"},
		{"-help=1"},
		{"demo", "--json"},
		{"--json", "--", "--header"},
	}
	for _, argv := range argvs {
		// The flag package.
		ref := flag.NewFlagSet("x", flag.ContinueOnError)
		ref.SetOutput(io.Discard)
		refJSON, refHeader := ref.Bool("json", false, ""), ref.Bool("header", false, "")
		refSocket, refEnv := ref.String("socket", "", ""), ref.String("env", "DEFAULT", "")
		refErr := ref.Parse(argv)

		fs := newFlagSet("x")
		jsonFlag, header := fs.Bool("json"), fs.Bool("header")
		socket, env := fs.String("socket", ""), fs.String("env", "DEFAULT")
		err := fs.Parse(argv)

		name := strings.Join(argv, " ")
		switch {
		case errors.Is(refErr, flag.ErrHelp):
			if !errors.Is(err, errHelp) || err.Error() != refErr.Error() {
				t.Errorf("%q: error %v, flag package %v", name, err, refErr)
			}
			continue
		case refErr != nil || err != nil:
			if refErr == nil || err == nil || err.Error() != refErr.Error() {
				t.Errorf("%q: error %v, flag package %v", name, err, refErr)
			}
			continue
		}
		got := fmt.Sprint(*jsonFlag, *header, *socket, *env, fs.Args())
		want := fmt.Sprint(*refJSON, *refHeader, *refSocket, *refEnv, ref.Args())
		if got != want {
			t.Errorf("%q: parsed %s, flag package %s", name, got, want)
		}
	}
}

func TestJSONAsEncodingJSON(t *testing.T) {
	at := time.Date(2030, 6, 1, 13, 0, 0, 120000000, time.UTC)
	off := time.Date(2030, 6, 1, 13, 0, 0, 0, time.FixedZone("", 7200))
	tokens := []*apitype.Token{
		{Profile: "demo", AccessToken: "eyJ.a.b", TokenType: "Bearer", ExpiresAt: at},
		{Profile: "<&>\u2028\"\\\x01\xff", AccessToken: "", TokenType: "é", ExpiresAt: off},
		{},
	}
	for _, tok := range tokens {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		utc := *tok
		utc.ExpiresAt = utc.ExpiresAt.UTC() // as get --json prints it
		if err := enc.Encode(&utc); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := printToken(&got, tok, true, false); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("get --json:\n%s\nencoding/json:\n%s", &got, &want)
		}
	}
	if err := printToken(io.Discard, &apitype.Token{ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, true, false); err == nil {
		t.Error("get --json of a year-10000 expiry: no error, encoding/json fails")
	}

	statuses := []*apitype.Status{
		{Version: "1", Profiles: []apitype.ProfileStatus{
			{Profile: "a", State: "valid", ExpiresAt: &at, LastRefresh: &off, NextRefresh: &at, RefreshToken: true},
			{Profile: "b", State: "import-needed", LastError: "x <y>", LastErrorAt: &at, StoreError: "read-only"},
			{},
		}},
		{Version: "1", Profiles: []apitype.ProfileStatus{}},
		{Version: "1"},
	}
	for _, st := range statuses {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			t.Fatal(err)
		}
		b, err := appendStatusJSON(nil, st)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeIndented(&got, b); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("status --json:\n%s\nencoding/json:\n%s", &got, &want)
		}
	}

	for _, list := range []apitype.DockerList{nil, {}, {"z.example.com": "u", "docker.io": "<me>", "a:5000": ""}} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(list); err != nil {
			t.Fatal(err)
		}
		if got := string(appendDockerListJSON(nil, list)) + "\n"; got != want.String() {
			t.Errorf("docker-credential list: %s, encoding/json: %s", got, &want)
		}
	}
}

func TestPadAsFmt(t *testing.T) {
	for _, s := range []string{"", "demo", "exactly-twenty-chars", "longer than twenty characters", "é😀"} {
		if got, want := pad(s, 20), fmt.Sprintf("%-20s", s); got != want {
			t.Errorf("pad(%q) = %q, fmt %q", s, got, want)
		}
	}
}

func TestLookPathAsOSExec(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("tool", 0o755)
	write("data", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	paths := []string{dir, "", ".", "/nonexistent:" + dir, "sub:" + dir, "/usr/bin:/bin"}
	files := []string{"tool", "data", "sub", "missing", "sh", "./tool", "./data", dir + "/tool", "", ".", "..", "/nonexistent/x"}
	for _, p := range paths {
		t.Setenv("PATH", p)
		for _, f := range files {
			want, wantErr := exec.LookPath(f)
			got, err := lookPath(f)
			if got != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Errorf("PATH=%q lookPath(%q) = %q, %v; os/exec: %q, %v", p, f, got, err, want, wantErr)
			}
		}
	}
}

// TestExecEnv holds the environment tokctl exec gives its command to
// os/exec's rule, the last value of a name wins and is the only one: with
// two TOKD_ACCESS_TOKEN entries, getenv in C and os.Getenv in Go read the
// first, a stale token inherited from the caller (a nested tokctl exec).
func TestExecEnv(t *testing.T) {
	environ := []string{"HOME=/home/u", "TOKD_ACCESS_TOKEN=stale", "PATH=/bin", "API_TOKEN=old", "TOKD_ACCESS_TOKENX=kept"}
	for _, name := range []string{"TOKD_ACCESS_TOKEN", "API_TOKEN", "NEW_TOKEN"} {
		got := execEnv(environ, name, "fresh")
		cmd := exec.Command("true")
		cmd.Env = append(slices.Clone(environ), name+"=fresh")
		if want := cmd.Environ(); !slices.Equal(got, want) {
			t.Errorf("execEnv(%s) = %q, os/exec: %q", name, got, want)
		}
	}
}

// TestExecEnvName: a name execve cannot set as given is a usage error,
// found before tokd is asked: with "=" the command would see another
// variable (A=B=token sets A), and a NUL makes execve fail.
func TestExecEnvName(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock") // nothing listens
	for _, name := range []string{"A=B", "=A", "TOKEN\x00X"} {
		err := run([]string{"--socket", socket, "exec", "--env", name, "demo", "--", "true"}, strings.NewReader(""), io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, "--env") {
			t.Errorf("exec --env %q: %v; want a usage error about --env", name, err)
		}
	}
}

func TestBase(t *testing.T) {
	for _, p := range []string{"/usr/bin/docker-credential-tokd", "docker-credential-tokd", "./tokctl", "/a/b/", "tokctl"} {
		if got, want := base(p), filepath.Base(p); got != want {
			t.Errorf("base(%q) = %q, filepath.Base %q", p, got, want)
		}
	}
}
