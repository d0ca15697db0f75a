// Package jsonscan reads JSON into fields its caller lists, without
// reflection. encoding/json's first Unmarshal in a process builds its
// reflection caches, 0.1 to 0.5 ms measured here; a process that lives for
// one call (the OCI hook, on every container create) reads its config file
// and the engine's answer with this instead, and the engine a hook run's
// state and config.json (encoding/json's validating and decoding passes
// over a runc spec cost more than the rest of the run). Each caller's fuzz
// test holds its reader to encoding/json's results. It imports only the standard
// library's lowest layers; anything may import it.
package jsonscan

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads one JSON document from data into the fields its caller
// names, validating what it skips. It holds no state beyond its position.
type Scanner struct {
	data []byte
	pos  int
}

// New scans data.
func New(data []byte) *Scanner { return &Scanner{data: data} }

// End checks that only white space follows the document.
func (s *Scanner) End() error {
	if s.peek() != 0 || s.pos < len(s.data) {
		return s.fail("data after the document")
	}
	return nil
}

// Skip consumes one value of any type, checking its syntax.
func (s *Scanner) Skip() error { return s.skip(0) }

// SkipNested is Skip for a value nested in depth enclosing objects or
// arrays of a larger document, whose nesting counts against the same bound.
func (s *Scanner) SkipNested(depth int) error { return s.skip(depth) }

// maxDepth bounds nesting in skipped values, as encoding/json does.
const maxDepth = 10000

// ErrSyntax is wrapped by every error about malformed JSON.
var ErrSyntax = errors.New("invalid JSON")

func (s *Scanner) fail(what string) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, s.pos, what)
}

func (s *Scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek is the next byte after white space, or 0 at the end.
func (s *Scanner) peek() byte {
	s.space()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *Scanner) literal(word string) bool {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// Null consumes a null, if that is what comes next.
func (s *Scanner) Null() bool {
	return s.peek() == 'n' && s.literal("null")
}

// Object reads an object, calling field for each key with the scanner at
// its value, which field must consume (Skip for a key it does not know).
func (s *Scanner) Object(field func(key string) error) error {
	if s.peek() != '{' {
		return s.mismatch("an object")
	}
	return s.object(func(key []byte) error { return field(string(key)) })
}

// object reads the object that comes next, with each key as rawStr gives
// it, valid until field returns.
func (s *Scanner) object(field func(key []byte) error) error {
	s.pos++
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("want a key")
		}
		key, err := s.rawStr()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.fail("want ':'")
		}
		s.pos++
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or '}'")
		}
	}
}

// String reads a string into dst; null leaves dst as it is, as
// encoding/json does.
func (s *Scanner) String(dst *string) error {
	if s.Null() {
		return nil
	}
	if s.peek() != '"' {
		return s.mismatch("a string")
	}
	v, err := s.str()
	*dst = v
	return err
}

// Bool reads a boolean into dst; null leaves dst as it is.
func (s *Scanner) Bool(dst *bool) error {
	switch {
	case s.Null():
	case s.peek() == 't' && s.literal("true"):
		*dst = true
	case s.peek() == 'f' && s.literal("false"):
		*dst = false
	default:
		return s.mismatch("a boolean")
	}
	return nil
}

// Uint64 reads an unsigned integer into dst; null leaves dst as it is.
func (s *Scanner) Uint64(dst *uint64) error {
	text, err := s.numberText("a number")
	if text == nil {
		return err
	}
	v, err := strconv.ParseUint(string(text), 10, 64)
	if err != nil {
		return fmt.Errorf("number %s before byte %d is not an unsigned 64-bit integer", text, s.pos)
	}
	*dst = v
	return nil
}

// Strings reads an array of strings into dst, reusing its storage as
// encoding/json does; null makes dst nil.
func (s *Scanner) Strings(dst *[]string) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.peek() != '[' {
		return s.mismatch("an array of strings")
	}
	out := (*dst)[:0]
	if out == nil {
		out = []string{}
	}
	err := s.array(func() error {
		// A slot of the old array keeps its string under a null.
		if len(out) < cap(out) {
			out = out[:len(out)+1]
		} else {
			out = append(out, "")
		}
		return s.String(&out[len(out)-1])
	})
	*dst = out
	return err
}

// array reads an array, calling elem with the scanner at each element,
// which elem must consume.
func (s *Scanner) array(elem func() error) error {
	s.pos++ // the '['
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or ']'")
		}
	}
}

// mismatch reports a value of the wrong type, once the value is known
// to be valid JSON (a syntax error wins, as in encoding/json).
func (s *Scanner) mismatch(want string) error {
	if err := s.skip(0); err != nil {
		return err
	}
	return fmt.Errorf("want %s before byte %d", want, s.pos)
}

// skip consumes one value of any type, checking its syntax.
func (s *Scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deep")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case c == '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case c == '"':
		return s.skipStr()
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't' && s.literal("true"), c == 'f' && s.literal("false"), c == 'n' && s.literal("null"):
		return nil
	}
	return s.fail("want a value")
}

// number consumes a number as JSON's grammar has it.
func (s *Scanner) number() error {
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case digits() == 0:
		return s.fail("want a digit")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.fail("want a digit after '.'")
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.fail("want a digit in the exponent")
		}
	}
	return nil
}

// str consumes a string and returns its value; invalid UTF-8 becomes
// U+FFFD, as encoding/json makes it.
func (s *Scanner) str() (string, error) {
	v, err := s.rawStr()
	return string(v), err
}

// rawStr is str's value as bytes: without escapes and outside ASCII, a
// slice of the input, so what is skipped or compared costs no allocation.
func (s *Scanner) rawStr() ([]byte, error) {
	s.pos++ // the opening quote
	start := s.pos
	// The common case: no escapes, plain ASCII.
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '"' {
			s.pos++
			return s.data[start : s.pos-1], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		s.pos++
	}
	var b []byte
	b = append(b, s.data[start:s.pos]...)
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return b, nil
		case c < 0x20:
			return nil, s.fail("control character in string")
		case c == '\\':
			r, err := s.escape()
			if err != nil {
				return nil, err
			}
			b = utf8.AppendRune(b, r)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			s.pos += size
			b = utf8.AppendRune(b, r) // RuneError for a bad byte
		default:
			b = append(b, c)
			s.pos++
		}
	}
	return nil, s.fail("unterminated string")
}

// skipStr consumes a string as rawStr does, checking it the same way but
// building nothing: a skipped string with escapes (a JSON document in an
// annotation) costs no allocation.
func (s *Scanner) skipStr() error {
	s.pos++ // the opening quote
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return nil
		case c < 0x20:
			return s.fail("control character in string")
		case c == '\\':
			if _, err := s.escape(); err != nil {
				return err
			}
		default:
			s.pos++ // invalid UTF-8 reads as U+FFFD: nothing to check
		}
	}
	return s.fail("unterminated string")
}

// escape consumes one escape sequence, a surrogate pair as one rune.
func (s *Scanner) escape() (rune, error) {
	if s.pos+1 >= len(s.data) {
		return 0, s.fail("unterminated escape")
	}
	c := s.data[s.pos+1]
	s.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := s.hex4()
		if !ok {
			return 0, s.fail("bad \\u escape")
		}
		if utf16.IsSurrogate(r) {
			// A pair makes one rune; a lone half is U+FFFD.
			save := s.pos
			if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
				s.pos += 2
				if r2, ok := s.hex4(); ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						return dec, nil
					}
				}
			}
			s.pos = save
			return utf8.RuneError, nil
		}
		return r, nil
	}
	return 0, s.fail("bad escape")
}

func (s *Scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.pos += 4
	return r, true
}
