package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStartJitter(t *testing.T) {
	tests := []struct {
		name string
		line string // prepended to minimal; "" for none
		want time.Duration
	}{
		{"default", "", 0},
		{"zero", `start_jitter = "0s"`, 0},
		{"minutes", `start_jitter = "8m40s"`, 8*time.Minute + 40*time.Second},
		{"fraction", `start_jitter = "1.5m"`, 90 * time.Second},
		{"the maximum", `start_jitter = "1h"`, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.line+"\n"+minimal, exampleOptions())
			if cfg.StartJitter.Duration != tt.want {
				t.Errorf("StartJitter = %v, want %v", cfg.StartJitter.Duration, tt.want)
			}
		})
	}
}

func TestStartJitterInvalid(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		wantMsg string
	}{
		{"without unit", `start_jitter = "30"`, `start_jitter: invalid duration "30": add a unit`},
		{"not a duration", `start_jitter = "soon"`, `start_jitter: invalid duration "soon"`},
		{"an integer", `start_jitter = 30`, `start_jitter: must be a duration string like "5m", not an integer`},
		{"negative", `start_jitter = "-1s"`, "start_jitter: -1s is out of range: it must be between 0s and 1h"},
		{"above an hour", `start_jitter = "61m"`, "start_jitter: 1h1m is out of range: it must be between 0s and 1h"},
		{"in a profile", "", "profiles.ci.start_jitter: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.line + "\n" + minimal
			if tt.line == "" {
				data = edit(minimal, `scopes =`, "start_jitter = \"1m\"\nscopes =")
			}
			_, _, err := Parse([]byte(data), exampleOptions())
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != 1 || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error:\n%v\nwant one problem containing %q", err, tt.wantMsg)
			}
		})
	}
}
