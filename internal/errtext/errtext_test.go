package errtext

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestWrapAsFmt(t *testing.T) {
	inner := fmt.Errorf("open x: %w", fs.ErrNotExist)
	got := Wrap("reading x", inner)
	want := fmt.Errorf("reading x: %w", inner)
	if got.Error() != want.Error() {
		t.Errorf("Wrap = %q, fmt.Errorf = %q", got, want)
	}
	if !errors.Is(got, fs.ErrNotExist) {
		t.Errorf("errors.Is(Wrap(...), fs.ErrNotExist) = false")
	}
}

func TestQuoteShortAsFmt(t *testing.T) {
	for _, tc := range []struct {
		s string
		n int
	}{{"", 3}, {"abc", 3}, {"abcdef", 3}, {"héllo wörld", 4}, {"a\"b\nc", 10}, {"\xff\xfeabc", 2}, {"abc", 0}} {
		if got, want := QuoteShort(tc.s, tc.n), fmt.Sprintf("%.*q", tc.n, tc.s); got != want {
			t.Errorf("QuoteShort(%q, %d) = %s, fmt's %%.%dq = %s", tc.s, tc.n, got, tc.n, want)
		}
	}
}
