package jsonscan

import (
	"fmt"
	"strconv"
)

// Int reads an integer that fits an int into dst, as encoding/json does
// (no fraction, no exponent); null leaves dst as it is.
func (s *Scanner) Int(dst *int) error {
	text, err := s.numberText("an integer")
	if text == nil {
		return err
	}
	v, err := strconv.ParseInt(string(text), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("number %s before byte %d is not an integer of %d bits", text, s.pos, strconv.IntSize)
	}
	*dst = int(v)
	return nil
}

// numberText consumes the number that comes next and returns its text;
// nil for a null (nothing to read) or an error, a type mismatch for
// anything but a number.
func (s *Scanner) numberText(want string) ([]byte, error) {
	if s.Null() {
		return nil, nil
	}
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return nil, s.mismatch(want)
	}
	start := s.pos
	if err := s.number(); err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

// StringMap reads an object of strings into dst, adding to a map an
// earlier key made, as encoding/json does; null makes dst nil, a null
// value is "".
func (s *Scanner) StringMap(dst *map[string]string) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.peek() != '{' {
		return s.mismatch("an object of strings")
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	return s.Object(func(key string) error {
		var v string
		err := s.String(&v)
		(*dst)[key] = v
		return err
	})
}

// StringMapOf is StringMap keeping only the keys keep accepts. The other
// values are checked to be strings, as StringMap checks them, and dropped
// unconverted: a runtime's state carries every annotation of a container,
// and a reader that needs a few of them pays for those alone.
func (s *Scanner) StringMapOf(dst *map[string]string, keep func(key []byte) bool) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.peek() != '{' {
		return s.mismatch("an object of strings")
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	return s.object(func(key []byte) error {
		if !keep(key) {
			return s.skipString()
		}
		var v string
		err := s.String(&v)
		(*dst)[string(key)] = v
		return err
	})
}

// skipString consumes a string or null, as String reads it, keeping
// nothing of it.
func (s *Scanner) skipString() error {
	if s.Null() {
		return nil
	}
	if s.peek() != '"' {
		return s.mismatch("a string")
	}
	return s.skipStr()
}

// Optional reads an object into the struct *dst points to, allocating it
// when nil (a repeated key reads into the same struct, as encoding/json
// does), calling field for each key; null makes *dst nil.
func Optional[T any](s *Scanner, dst **T, field func(key string) error) error {
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.peek() != '{' {
		return s.mismatch("an object")
	}
	if *dst == nil {
		*dst = new(T)
	}
	return s.Object(field)
}
