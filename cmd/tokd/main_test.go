package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelp checks that asked-for help goes to stdout with status 0, lists
// every flag as the man page and README spell it (--name), and that a
// usage error prints one line and a hint on stderr, not the whole help.
func TestHelp(t *testing.T) {
	// The flags of tokd(8) and README.md; packaging's
	// TestDocumentedEverywhere checks the other way round.
	names := []string{"config", "check", "dev", "socket", "state-dir", "log-level", "log-format", "version"}
	for _, arg := range []string{"--help", "-h", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{arg}, &stdout, &stderr)
			if code := exitCode(err, &stderr); code != exitOK {
				t.Errorf("tokd %s: exit %d, want %d", arg, code, exitOK)
			}
			if stderr.Len() > 0 {
				t.Errorf("tokd %s wrote to stderr:\n%s", arg, &stderr)
			}
			help := stdout.String()
			if !strings.HasPrefix(help, "usage: tokd ") {
				t.Errorf("tokd %s: help does not start with a usage line:\n%s", arg, help)
			}
			for _, name := range names {
				if !strings.Contains(help, "\n  --"+name+" ") {
					t.Errorf("tokd %s: help lists no --%s:\n%s", arg, name, help)
				}
			}
		})
	}

	t.Run("unknown flag", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"--bogus"}, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != exitUsage {
			t.Errorf("exit %d, want %d", code, exitUsage)
		}
		want := "tokd: flag provided but not defined: -bogus\nrun 'tokd --help' for usage\n"
		if got := stderr.String(); got != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
		}
		if stdout.Len() > 0 {
			t.Errorf("stdout:\n%s", &stdout)
		}
	})
}
