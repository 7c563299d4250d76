package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-fleets", "free=40", "-scenarios", "start,outage,steady", "-retry-after", "no", "-sweep", "0"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"| start free 40 |", "| outage free 40 |", "| steady free 40 |", "| Premium | 65, 3400 |"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestRunVerbose checks that -v splits an outage's requests until recovery
// by the hosts' state.
func TestRunVerbose(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-fleets", "free=40", "-scenarios", "outage", "-retry-after", "no", "-v"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"target recovery", "| host state |", "| all |"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-fleets", "gold=10"},
		{"-fleets", "free"},
		{"-scenarios", "meltdown"},
		{"-retry-after", "maybe"},
		{"-start-jitter", "-1"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
