package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key string // full dotted key path, like "profiles.ci.assertion.key_file"
	Msg string
}

// String returns the problem as "key: message".
func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// ValidationError lists every problem found in a configuration, sorted by key.
type ValidationError struct {
	Problems []Problem
}

// Error returns one "key: message" line per problem.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Warning is something in a valid configuration that deserves attention,
// such as a key file that group or others can read.
type Warning struct {
	Key string
	Msg string
}

// String returns the warning as "key: message".
func (w Warning) String() string {
	if w.Key == "" {
		return w.Msg
	}
	return w.Key + ": " + w.Msg
}

// SyntaxError is a TOML syntax error, located by line and column (both
// starting at 1).
type SyntaxError struct {
	Path   string // the file, when known
	Line   int
	Column int
	Msg    string
	Err    error // the decoder's error
}

// Error returns the message with its position.
func (e *SyntaxError) Error() string {
	pos := fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	if e.Path != "" {
		return e.Path + ": " + pos
	}
	return pos
}

// Unwrap returns the decoder's error.
func (e *SyntaxError) Unwrap() error { return e.Err }

// report collects problems and warnings while a configuration is decoded
// and validated.
type report struct {
	problems []Problem
	warnings []Warning
	// typeErrs holds the keys whose value had the wrong type: later checks
	// stay silent about them and everything below them, so that one mistake
	// gives one message.
	typeErrs map[string]bool
}

func newReport() *report { return &report{typeErrs: map[string]bool{}} }

// problem records a problem at key unless key or one of its parents
// already had a type error.
func (r *report) problem(key, format string, args ...any) {
	if r.silenced(key) {
		return
	}
	r.problems = append(r.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// typeProblem records a type error at key and silences the key.
func (r *report) typeProblem(key, msg string) {
	r.problems = append(r.problems, Problem{Key: key, Msg: msg})
	r.typeErrs[key] = true
}

func (r *report) warn(key, format string, args ...any) {
	r.warnings = append(r.warnings, Warning{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// silenced reports whether key or one of its parents had a type error.
func (r *report) silenced(key string) bool {
	for k := range r.typeErrs {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// hasProblemUnder reports whether a problem was recorded at key or below it.
func (r *report) hasProblemUnder(key string) bool {
	for _, p := range r.problems {
		if p.Key == key || strings.HasPrefix(p.Key, key+".") {
			return true
		}
	}
	return false
}

// err returns the problems as a *ValidationError, or nil when there are none.
func (r *report) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	ps := append([]Problem(nil), r.problems...)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	return &ValidationError{Problems: ps}
}

func (r *report) sortedWarnings() []Warning {
	ws := append([]Warning(nil), r.warnings...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Key < ws[j].Key })
	return ws
}
