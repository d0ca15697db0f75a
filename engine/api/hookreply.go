package api

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeHookReply reads an OpHook answer into the fields a hook logs, as
// json.Unmarshal into hookReply would. encoding/json's first Unmarshal in a
// process builds its reflection caches, 0.1 to 0.2 ms of a hook's run on
// every container create; this scanner is written for the one type.
// FuzzDecodeHookReply holds it to encoding/json's results.
func decodeHookReply(data []byte) (hookReply, error) {
	s := &replyScanner{data: data}
	var r hookReply
	if s.null() {
		return r, s.end()
	}
	err := s.object(func(key string) error {
		switch {
		case strings.EqualFold(key, "error"):
			return s.stringInto(&r.Error)
		case strings.EqualFold(key, "code"):
			return s.stringInto(&r.Code)
		case strings.EqualFold(key, "notFound"):
			return s.boolInto(&r.NotFound)
		case strings.EqualFold(key, "container"):
			if s.null() {
				r.Container = nil
				return nil
			}
			if r.Container == nil {
				r.Container = &Registered{}
			}
			return s.registered(r.Container)
		}
		return s.skip(0)
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return hookReply{}, err
	}
	return r, nil
}

// end checks that only white space follows the answer.
func (s *replyScanner) end() error {
	if s.peek() != 0 || s.pos < len(s.data) {
		return s.fail("data after the answer")
	}
	return nil
}

func (s *replyScanner) registered(c *Registered) error {
	return s.object(func(key string) error {
		switch {
		case strings.EqualFold(key, "id"):
			return s.stringInto(&c.ID)
		case strings.EqualFold(key, "cgroupId"):
			return s.uintInto(&c.CgroupID)
		case strings.EqualFold(key, "cgroupPath"):
			return s.stringInto(&c.CgroupPath)
		case strings.EqualFold(key, "namespace"):
			return s.stringInto(&c.Namespace)
		case strings.EqualFold(key, "pod"):
			return s.stringInto(&c.Pod)
		case strings.EqualFold(key, "container"):
			return s.stringInto(&c.Name)
		case strings.EqualFold(key, "policies"):
			return s.stringsInto(&c.Policies)
		}
		return s.skip(0)
	})
}

// replyScanner reads JSON from data, validating what it skips.
type replyScanner struct {
	data []byte
	pos  int
}

// maxDepth bounds nesting in skipped values, as encoding/json does.
const maxDepth = 10000

var errSyntax = errors.New("invalid JSON")

func (s *replyScanner) fail(what string) error {
	return fmt.Errorf("%w at byte %d: %s", errSyntax, s.pos, what)
}

func (s *replyScanner) space() {
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
func (s *replyScanner) peek() byte {
	s.space()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *replyScanner) literal(word string) bool {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// null consumes a null, if that is what comes next.
func (s *replyScanner) null() bool {
	return s.peek() == 'n' && s.literal("null")
}

// object reads an object, calling field for each key with the scanner at
// its value, which field must consume.
func (s *replyScanner) object(field func(key string) error) error {
	if s.peek() != '{' {
		return s.fail("want an object")
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("want a key")
		}
		key, err := s.str()
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

func (s *replyScanner) stringInto(dst *string) error {
	if s.null() {
		return nil
	}
	if s.peek() != '"' {
		return s.skipMismatch("a string")
	}
	v, err := s.str()
	*dst = v
	return err
}

func (s *replyScanner) boolInto(dst *bool) error {
	switch {
	case s.null():
	case s.peek() == 't' && s.literal("true"):
		*dst = true
	case s.peek() == 'f' && s.literal("false"):
		*dst = false
	default:
		return s.skipMismatch("a boolean")
	}
	return nil
}

func (s *replyScanner) uintInto(dst *uint64) error {
	if s.null() {
		return nil
	}
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return s.skipMismatch("a number")
	}
	start := s.pos
	if err := s.number(); err != nil {
		return err
	}
	v, err := strconv.ParseUint(string(s.data[start:s.pos]), 10, 64)
	if err != nil {
		return fmt.Errorf("number %s is not a cgroup id", s.data[start:s.pos])
	}
	*dst = v
	return nil
}

func (s *replyScanner) stringsInto(dst *[]string) error {
	if s.null() {
		*dst = nil
		return nil
	}
	if s.peek() != '[' {
		return s.skipMismatch("an array of strings")
	}
	out := (*dst)[:0]
	if out == nil {
		out = []string{}
	}
	err := s.array(func() error {
		var v string
		err := s.stringInto(&v)
		out = append(out, v)
		return err
	})
	*dst = out
	return err
}

// array reads an array, calling elem with the scanner at each element,
// which elem must consume.
func (s *replyScanner) array(elem func() error) error {
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

// skipMismatch reports a value of the wrong type, once the value is known
// to be valid JSON (a syntax error wins, as in encoding/json).
func (s *replyScanner) skipMismatch(want string) error {
	if err := s.skip(0); err != nil {
		return err
	}
	return fmt.Errorf("want %s before byte %d", want, s.pos)
}

// skip consumes one value of any type, checking its syntax.
func (s *replyScanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deep")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(func(string) error { return s.skip(depth + 1) })
	case c == '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't' && s.literal("true"), c == 'f' && s.literal("false"), c == 'n' && s.literal("null"):
		return nil
	}
	return s.fail("want a value")
}

// number consumes a number as JSON's grammar has it.
func (s *replyScanner) number() error {
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
func (s *replyScanner) str() (string, error) {
	s.pos++ // the opening quote
	start := s.pos
	// The common case: no escapes, plain ASCII.
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '"' {
			v := string(s.data[start:s.pos])
			s.pos++
			return v, nil
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
			return string(b), nil
		case c < 0x20:
			return "", s.fail("control character in string")
		case c == '\\':
			r, err := s.escape()
			if err != nil {
				return "", err
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
	return "", s.fail("unterminated string")
}

// escape consumes one escape sequence, a surrogate pair as one rune.
func (s *replyScanner) escape() (rune, error) {
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

func (s *replyScanner) hex4() (rune, bool) {
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
