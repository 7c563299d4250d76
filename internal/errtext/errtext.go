// Package errtext builds error messages without fmt, for tokctl and the
// packages it links, which leave fmt out to start faster (see
// docs/BENCHMARKS.md, section 1).
package errtext

import "strconv"

// Error is an error with its own message that wraps another, as
// fmt.Errorf("...: %w") makes one.
type Error struct {
	Msg string // the whole message
	Err error  // what errors.Is and errors.As look into
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err with context before it: "context: err".
func Wrap(context string, err error) error {
	return &Error{Msg: context + ": " + err.Error(), Err: err}
}

// QuoteShort quotes s cut to its first n runes, as fmt's %.Nq does.
func QuoteShort(s string, n int) string {
	for i := range s {
		if n == 0 {
			s = s[:i]
			break
		}
		n--
	}
	return strconv.Quote(s)
}
