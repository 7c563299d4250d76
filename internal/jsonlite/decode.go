// Package jsonlite reads and writes the little JSON that tokctl speaks,
// without reflection: the answers of tokd's socket API, and the JSON
// that git, kubectl and docker exchange with their helpers.
//
// tokctl starts on every git, kubectl and docker call, and linking
// encoding/json (with reflect, and the package initialisers both bring)
// costs every one of those processes time and page faults, whether or not
// it decodes anything (docs/BENCHMARKS.md, section 1). This package holds
// to encoding/json's rules wherever the types tokctl uses are concerned,
// so that decoding with it and with json.Unmarshal gives the same value
// or both fail, and writing with it gives encoding/json's bytes; the
// fuzz tests of client, credproto and this package check that against
// encoding/json itself.
//
// Decoding is in two steps, as json.Unmarshal's: Decode first checks that
// the whole input is one valid JSON value (so a syntax error anywhere
// wins over a type error), then hands a Decoder to a function that reads
// the value into Go variables with String, Bool, Time, Object, Array and
// Skip, which follow encoding/json's rules for those Go types: null leaves
// a string, bool or struct unchanged; a value of another JSON type is an
// error; object keys match field names without regard to case, as
// encoding/json matches them (Fold).
package jsonlite

import (
	"errors"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is encoding/json's limit on the nesting of arrays and objects.
const maxDepth = 10000

// SyntaxError is input that is not one valid JSON value.
type SyntaxError struct {
	msg    string
	Offset int // the byte at which the error was found
}

func (e *SyntaxError) Error() string { return e.msg }

// TypeError is a JSON value that cannot be decoded into the Go type asked
// for, such as a number for a string.
type TypeError struct {
	Value  string // "string", "number", "object", "array" or "bool"
	GoType string
	Offset int
}

func (e *TypeError) Error() string {
	return "cannot decode a JSON " + e.Value + " into a Go " + e.GoType + " (at byte " + strconv.Itoa(e.Offset) + ")"
}

// Valid reports why data is not one valid JSON value (RFC 8259, with
// encoding/json's nesting limit), surrounded by optional white space, or
// nil if it is.
func Valid(data []byte) error {
	v := validator{data: data}
	v.space()
	if err := v.value(0); err != nil {
		return err
	}
	v.space()
	if v.pos < len(data) {
		return v.fail("after top-level value")
	}
	return nil
}

type validator struct {
	data []byte
	pos  int
}

func (v *validator) fail(context string) error {
	if v.pos >= len(v.data) {
		return &SyntaxError{msg: "unexpected end of JSON input", Offset: v.pos}
	}
	return &SyntaxError{msg: "invalid character " + strconv.QuoteRune(rune(v.data[v.pos])) + " " + context, Offset: v.pos}
}

func (v *validator) space() {
	for v.pos < len(v.data) && isSpace(v.data[v.pos]) {
		v.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (v *validator) value(depth int) error {
	if v.pos >= len(v.data) {
		return v.fail("")
	}
	switch c := v.data[v.pos]; {
	case c == '{':
		if depth++; depth > maxDepth {
			return &SyntaxError{msg: "exceeded max depth", Offset: v.pos}
		}
		v.pos++
		v.space()
		if v.pos < len(v.data) && v.data[v.pos] == '}' {
			v.pos++
			return nil
		}
		for {
			if v.pos >= len(v.data) || v.data[v.pos] != '"' {
				return v.fail("looking for beginning of object key string")
			}
			if err := v.string(); err != nil {
				return err
			}
			v.space()
			if v.pos >= len(v.data) || v.data[v.pos] != ':' {
				return v.fail("after object key")
			}
			v.pos++
			v.space()
			if err := v.value(depth); err != nil {
				return err
			}
			v.space()
			if v.pos < len(v.data) && v.data[v.pos] == ',' {
				v.pos++
				v.space()
				continue
			}
			if v.pos < len(v.data) && v.data[v.pos] == '}' {
				v.pos++
				return nil
			}
			return v.fail("after object key:value pair")
		}
	case c == '[':
		if depth++; depth > maxDepth {
			return &SyntaxError{msg: "exceeded max depth", Offset: v.pos}
		}
		v.pos++
		v.space()
		if v.pos < len(v.data) && v.data[v.pos] == ']' {
			v.pos++
			return nil
		}
		for {
			if err := v.value(depth); err != nil {
				return err
			}
			v.space()
			if v.pos < len(v.data) && v.data[v.pos] == ',' {
				v.pos++
				v.space()
				continue
			}
			if v.pos < len(v.data) && v.data[v.pos] == ']' {
				v.pos++
				return nil
			}
			return v.fail("after array element")
		}
	case c == '"':
		return v.string()
	case c == '-' || '0' <= c && c <= '9':
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return v.fail("looking for beginning of value")
}

func (v *validator) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if v.pos >= len(v.data) || v.data[v.pos] != word[i] {
			return v.fail("in literal " + word)
		}
		v.pos++
	}
	return nil
}

// string checks a string from its opening quote: no control characters,
// only JSON's escapes. Bytes that are not UTF-8 are allowed, as
// encoding/json allows them (they decode to U+FFFD).
func (v *validator) string() error {
	v.pos++ // the opening quote
	for v.pos < len(v.data) {
		// Most of a token is plain ASCII: skip it in a tight loop.
		v.pos = skipPlain(v.data, v.pos)
		if v.pos >= len(v.data) {
			break
		}
		switch c := v.data[v.pos]; {
		case c == '"':
			v.pos++
			return nil
		case c < 0x20:
			return v.fail("in string literal")
		case c == '\\':
			v.pos++
			if v.pos >= len(v.data) {
				return v.fail("")
			}
			switch v.data[v.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.pos++
			case 'u':
				v.pos++
				for range 4 {
					if v.pos >= len(v.data) || !isHex(v.data[v.pos]) {
						return v.fail("in \\u hexadecimal character escape")
					}
					v.pos++
				}
			default:
				return v.fail("in string escape code")
			}
		default:
			v.pos++
		}
	}
	return v.fail("")
}

// skipPlain returns the index of the first byte from i on that a string
// may not hold as it is (printable ASCII but for '"' and '\\'), or len(b).
func skipPlain(b []byte, i int) int {
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (v *validator) number() error {
	d := v.data
	if d[v.pos] == '-' {
		v.pos++
	}
	switch {
	case v.pos < len(d) && d[v.pos] == '0':
		v.pos++
	case v.pos < len(d) && '1' <= d[v.pos] && d[v.pos] <= '9':
		for v.pos < len(d) && isDigit(d[v.pos]) {
			v.pos++
		}
	default:
		return v.fail("in numeric literal")
	}
	if v.pos < len(d) && d[v.pos] == '.' {
		v.pos++
		if v.pos >= len(d) || !isDigit(d[v.pos]) {
			return v.fail("after decimal point in numeric literal")
		}
		for v.pos < len(d) && isDigit(d[v.pos]) {
			v.pos++
		}
	}
	if v.pos < len(d) && (d[v.pos] == 'e' || d[v.pos] == 'E') {
		v.pos++
		if v.pos < len(d) && (d[v.pos] == '+' || d[v.pos] == '-') {
			v.pos++
		}
		if v.pos >= len(d) || !isDigit(d[v.pos]) {
			return v.fail("in exponent of numeric literal")
		}
		for v.pos < len(d) && isDigit(d[v.pos]) {
			v.pos++
		}
	}
	return nil
}

// Decoder reads a JSON value that Valid has accepted.
type Decoder struct {
	data []byte
	pos  int
}

// Decode checks that data is one valid JSON value and calls value to
// decode it; value must read exactly one value from d.
func Decode(data []byte, value func(d *Decoder) error) error {
	if err := Valid(data); err != nil {
		return err
	}
	return value(&Decoder{data: data})
}

// errInvalid is a Decoder used on input Valid has not accepted.
var errInvalid = errors.New("jsonlite: invalid input")

// Peek returns the first byte of the next value: '{', '[', '"', 't',
// 'f', 'n', '-' or a digit.
func (d *Decoder) Peek() byte { return d.peek() }

// peek skips white space and returns the first byte of the next value.
func (d *Decoder) peek() byte {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return 0
	}
	return d.data[d.pos]
}

// kind names the JSON type of the value starting with c, for TypeError.
func kind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// mismatch skips the value at d.pos and reports that it is not of goType.
func (d *Decoder) mismatch(goType string) error {
	off := d.pos
	c := d.peek()
	if _, err := d.Raw(); err != nil {
		return err
	}
	return &TypeError{Value: kind(c), GoType: goType, Offset: off}
}

// IsNull reports whether the next value is null, and if so reads it.
func (d *Decoder) IsNull() bool {
	if d.peek() == 'n' && d.pos+4 <= len(d.data) && string(d.data[d.pos:d.pos+4]) == "null" {
		d.pos += 4
		return true
	}
	return false
}

// Raw reads the next value and returns its text.
func (d *Decoder) Raw() ([]byte, error) {
	start := d.pos
	if err := d.Skip(); err != nil {
		return nil, err
	}
	return d.data[start:d.pos], nil
}

// Skip reads the next value, whatever it is.
func (d *Decoder) Skip() error {
	switch c := d.peek(); c {
	case '{', '[':
		// Valid has checked the nesting: count brackets outside strings.
		depth := 0
		for d.pos < len(d.data) {
			switch d.data[d.pos] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			case '"':
				if _, err := d.skipString(); err != nil {
					return err
				}
				continue
			}
			d.pos++
			if depth == 0 {
				return nil
			}
		}
		return errInvalid
	case '"':
		_, err := d.skipString()
		return err
	case 0:
		return errInvalid
	}
	// A number or a literal: up to the next delimiter.
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return nil
		}
		d.pos++
	}
	return nil
}

// skipString reads a string from its opening quote and reports whether it
// holds anything to unquote (an escape, a byte that is not UTF-8, or a
// character that encoding/json would coerce).
func (d *Decoder) skipString() (plain bool, err error) {
	plain = true
	d.pos++
	for d.pos < len(d.data) {
		d.pos = skipPlain(d.data, d.pos)
		if d.pos >= len(d.data) {
			break
		}
		switch c := d.data[d.pos]; {
		case c == '"':
			d.pos++
			return plain, nil
		case c == '\\':
			plain = false
			d.pos += 2
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			d.pos += size
		}
	}
	return false, errInvalid
}

// readString reads a string value and returns it unquoted.
func (d *Decoder) readString() (string, error) {
	start := d.pos
	plain, err := d.skipString()
	if err != nil {
		return "", err
	}
	s := d.data[start+1 : d.pos-1]
	if plain {
		return string(s), nil
	}
	return unquote(s)
}

// unquote decodes the body of a valid JSON string as encoding/json does:
// escapes resolved, a surrogate escape that is not half of a pair and
// every byte that is not UTF-8 replaced by U+FFFD.
func unquote(s []byte) (string, error) {
	b := make([]byte, 0, len(s))
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			if r+1 >= len(s) {
				return "", errInvalid
			}
			switch e := s[r+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
				r += 2
			case 'b':
				b = append(b, '\b')
				r += 2
			case 'f':
				b = append(b, '\f')
				r += 2
			case 'n':
				b = append(b, '\n')
				r += 2
			case 'r':
				b = append(b, '\r')
				r += 2
			case 't':
				b = append(b, '\t')
				r += 2
			case 'u':
				rr := getu4(s[r:])
				if rr < 0 {
					return "", errInvalid
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			default:
				return "", errInvalid
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return string(b), nil
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// String reads a string into dst; null leaves dst as it is.
func (d *Decoder) String(dst *string) error {
	switch d.peek() {
	case '"':
		s, err := d.readString()
		if err != nil {
			return err
		}
		*dst = s
		return nil
	case 'n':
		if d.IsNull() {
			return nil
		}
	}
	return d.mismatch("string")
}

// Bool reads true or false into dst; null leaves dst as it is.
func (d *Decoder) Bool(dst *bool) error {
	switch d.peek() {
	case 't', 'f':
		raw, err := d.Raw()
		if err != nil {
			return err
		}
		*dst = string(raw) == "true"
		return nil
	case 'n':
		if d.IsNull() {
			return nil
		}
	}
	return d.mismatch("bool")
}

// Time reads a time as encoding/json does, with time.Time's
// UnmarshalJSON on the value's text: an RFC 3339 string, or null, which
// leaves dst as it is.
func (d *Decoder) Time(dst *time.Time) error {
	raw, err := d.Raw()
	if err != nil {
		return err
	}
	return dst.UnmarshalJSON(raw)
}

// TimePtr reads a time for a *time.Time: null sets *dst to nil.
func (d *Decoder) TimePtr(dst **time.Time) error {
	if d.IsNull() {
		*dst = nil
		return nil
	}
	if *dst == nil {
		*dst = new(time.Time)
	}
	return d.Time(*dst)
}

// Object reads an object, calling member with each key (unquoted) and the
// decoder at the member's value, which member must read. null calls
// nothing; another JSON type is a TypeError naming goType.
func (d *Decoder) Object(goType string, member func(key string) error) error {
	switch d.peek() {
	case '{':
	case 'n':
		if d.IsNull() {
			return nil
		}
		return d.mismatch(goType)
	default:
		return d.mismatch(goType)
	}
	d.pos++
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return errInvalid
		}
		key, err := d.readString()
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return errInvalid
		}
		d.pos++
		if err := member(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return errInvalid
		}
	}
}

// Array reads an array, calling elem for each element with the decoder at
// it, which elem must read; i counts from 0. It reports null (as true)
// without calling elem; another JSON type is a TypeError naming goType.
func (d *Decoder) Array(goType string, elem func(i int) error) (null bool, err error) {
	switch d.peek() {
	case '[':
	case 'n':
		if d.IsNull() {
			return true, nil
		}
		return false, d.mismatch(goType)
	default:
		return false, d.mismatch(goType)
	}
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return false, nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return false, err
		}
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return false, nil
		default:
			return false, errInvalid
		}
	}
}

// Fold returns key as encoding/json compares object keys with field
// names: ASCII letters upper-cased, every other letter replaced by the
// smallest rune of its case-folding orbit (so that "ſ" and "s" both give
// "S", and the Kelvin sign gives "K"). A struct field named "access_token"
// matches the keys whose Fold is "ACCESS_TOKEN".
func Fold(key string) string {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c >= utf8.RuneSelf || 'a' <= c && c <= 'z' {
			return fold(key)
		}
	}
	return key
}

func fold(key string) string {
	out := make([]byte, 0, len(key))
	for i := 0; i < len(key); {
		if c := key[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(key[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return string(out)
}

// foldRune returns the smallest rune of r's case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// Slice reads an array into *s as encoding/json decodes an array into a
// slice: elem reads each element into its place, which keeps what an
// earlier array with the same key left there (encoding/json decodes into
// the slice it finds, up to its capacity); the length is then the
// array's; null sets *s to nil, and an empty array to a new empty slice.
func Slice[T any](d *Decoder, goType string, s *[]T, elem func(e *T) error) error {
	n := 0
	null, err := d.Array(goType, func(i int) error {
		if i < cap(*s) {
			*s = (*s)[:i+1]
		} else {
			var zero T
			*s = append(*s, zero)
		}
		n = i + 1
		return elem(&(*s)[i])
	})
	switch {
	case err != nil:
		return err
	case null:
		*s = nil
	case n == 0:
		*s = []T{} // a new slice: what an earlier array left is gone
	default:
		*s = (*s)[:n]
	}
	return nil
}

// StringMap reads an object of strings into *m as encoding/json decodes
// into a map[string]string: into the map it finds (made if nil), a null
// member as "", and null for the whole sets *m to nil.
func StringMap(d *Decoder, goType string, m *map[string]string) error {
	if d.IsNull() {
		*m = nil
		return nil
	}
	if d.peek() == '{' && *m == nil {
		*m = map[string]string{}
	}
	return d.Object(goType, func(key string) error {
		var v string
		if err := d.String(&v); err != nil {
			return err
		}
		(*m)[key] = v
		return nil
	})
}
