package jsonscan

import (
	"errors"
	"strings"
	"testing"
)

// TestSkipChecksSyntax: what a reader skips is still checked, and a
// malformed document names where it breaks.
func TestSkipChecksSyntax(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr string // "" for valid
	}{
		{`{"a":[1,-2.5e+3,true,false,null,"x\u00e9",{"b":[]}]}`, ""},
		{` [ ] `, ""},
		{`{"a":01}`, "want ',' or '}'"},
		{`{"a":1.}`, "want a digit after '.'"},
		{`{"a":"\q"}`, "bad escape"},
		{"{\"a\":\"\x01\"}", "control character in string"},
		{`{"a":"x`, "unterminated string"},
		{`{"a" 1}`, "want ':'"},
		{`[1,]`, "want a value"},
		{`{} x`, "data after the document"},
		{strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2), "nested too deep"},
	} {
		s := New([]byte(tt.in))
		err := s.Skip()
		if err == nil {
			err = s.End()
		}
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%.40q: %v", tt.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "at byte ") {
			t.Errorf("%.40q: error %v, want ErrSyntax saying %q at a byte offset", tt.in, err, tt.wantErr)
		}
	}
}

// TestTypeMismatch: a value of the wrong type is an error that is not a
// syntax error, and the scanner has consumed the value.
func TestTypeMismatch(t *testing.T) {
	var str string
	var n uint64
	var list []string
	for name, read := range map[string]func(*Scanner) error{
		"string":  func(s *Scanner) error { return s.String(&str) },
		"uint64":  func(s *Scanner) error { return s.Uint64(&n) },
		"strings": func(s *Scanner) error { return s.Strings(&list) },
		"object":  func(s *Scanner) error { return s.Object(func(string) error { return s.Skip() }) },
	} {
		for _, in := range []string{`{"x":[{}]} `, `["x"]`, `"x"`, `true`} {
			s := New([]byte(in))
			if err := read(s); err != nil && (errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "want ")) {
				t.Errorf("%s of %s: %v, want a type error", name, in, err)
			} else if err != nil && s.End() != nil {
				t.Errorf("%s of %s: the mismatched value was not consumed", name, in)
			}
		}
	}
	for _, in := range []string{`{"x":[{}]}`, `["x"]`, `true`} {
		if err := New([]byte(in)).String(&str); err == nil {
			t.Errorf("String(%s): want a type error", in)
		}
	}
	if err := New([]byte(`-1`)).Uint64(&n); err == nil {
		t.Error("Uint64(-1): want an error")
	}
}
