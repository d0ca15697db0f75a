package ocihook

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is encoding/json's nesting limit, kept so that both refuse the
// same inputs.
const maxDepth = 10000

// decoder reads the few fields a hook run needs of config.json in one pass
// over the input, where encoding/json makes two (a validating scan, then a
// decoding one that still scans every field it skips). It accepts exactly
// the JSON encoding/json accepts and decodes by its rules: keys match
// case-insensitively (bytes.EqualFold), a null leaves a string as it was
// and clears a map, slice or pointer, a repeated key decodes into what the
// earlier one left, invalid UTF-8 in a string becomes U+FFFD. Everything
// else is checked and skipped without building anything.
type decoder struct {
	data []byte
	pos  int
}

// syntaxError names what was wrong and where, as encoding/json's does.
func (d *decoder) syntaxError(what string) error {
	if d.pos >= len(d.data) {
		return fmt.Errorf("unexpected end of JSON input (%s)", what)
	}
	return fmt.Errorf("invalid character %s %s at offset %d", strconv.QuoteRune(rune(d.data[d.pos])), what, d.pos)
}

// typeError names a field whose value is of the wrong JSON type.
func (d *decoder) typeError(field, want string) error {
	got := "a value"
	if d.pos < len(d.data) {
		switch c := d.data[d.pos]; {
		case c == '{':
			got = "an object"
		case c == '[':
			got = "an array"
		case c == '"':
			got = "a string"
		case c == 't' || c == 'f':
			got = "a boolean"
		case c == '-' || c >= '0' && c <= '9':
			got = "a number"
		}
	}
	return fmt.Errorf("%s is %s, want %s", field, got, want)
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// end checks that only white space follows the value.
func (d *decoder) end() error {
	d.space()
	if d.pos < len(d.data) {
		return d.syntaxError("after top-level value")
	}
	return nil
}

// peek is the next byte after white space, or 0 at the end.
func (d *decoder) peek() byte {
	d.space()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// null consumes a null, reporting whether there was one.
func (d *decoder) null() (bool, error) {
	if d.peek() != 'n' {
		return false, nil
	}
	return true, d.literal("null")
}

func (d *decoder) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if d.pos >= len(d.data) || d.data[d.pos] != word[i] {
			return d.syntaxError("in literal " + word)
		}
		d.pos++
	}
	return nil
}

// members calls member for each member of the object that comes next,
// with its key unescaped; member must consume the value.
func (d *decoder) members(member func(key []byte) error) error {
	d.space()
	d.pos++ // '{', checked by the caller
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.syntaxError("looking for beginning of object key string")
		}
		key, err := d.rawString()
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return d.syntaxError("after object key")
		}
		d.pos++
		if err := member(key); err != nil {
			return err
		}
		if more, err := d.next('}', "after object key:value pair"); !more {
			return err
		}
	}
}

// next passes what follows a member or an element: a comma (more), or
// closer; what says where anything else was found.
func (d *decoder) next(closer byte, what string) (more bool, err error) {
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case closer:
		d.pos++
		return false, nil
	}
	return false, d.syntaxError(what)
}

// optional decodes an object into the struct *p points to, allocating it
// when nil (a repeated key decodes into the same struct); a null clears it.
// member decodes one member into *p.
func optional[T any](d *decoder, p **T, field string, member func(key []byte) error) error {
	if done, err := begin(d, p, field, "an object", '{'); done {
		return err
	}
	if *p == nil {
		*p = new(T)
	}
	return d.members(member)
}

// begin takes what comes before a container value: a null clears *p, and
// anything but the container's opening byte is a type error naming field.
// Either way the value is done with.
func begin[T any](d *decoder, p *T, field, want string, open byte) (done bool, err error) {
	if isNull, err := d.null(); isNull || err != nil {
		if isNull {
			var zero T
			*p = zero
		}
		return true, err
	}
	if d.peek() != open {
		return true, d.wrongType(field, want)
	}
	return false, nil
}

// isKey says whether key names the field name, as encoding/json matches
// keys (bytes.EqualFold).
func isKey(key []byte, name string) bool { return strings.EqualFold(string(key), name) }

// only decodes the member called name (matched as encoding/json matches
// keys) with decode and skips any other.
func (d *decoder) only(key []byte, name string, decode func() error) error {
	if isKey(key, name) {
		return decode()
	}
	return d.skip()
}

// str decodes a string field; a null leaves *s as it was.
func (d *decoder) str(field string, s *string) error {
	if isNull, err := d.null(); isNull || err != nil {
		return err
	}
	if d.peek() != '"' {
		return d.wrongType(field, "a string")
	}
	v, err := d.stringValue()
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// strings decodes an array of strings into *s, reusing its backing array
// as encoding/json does; a null clears it.
func (d *decoder) strings(field string, s *[]string) error {
	if done, err := begin(d, s, field, "an array of strings", '['); done {
		return err
	}
	d.pos++
	out := (*s)[:0]
	if d.peek() == ']' {
		d.pos++
		*s = []string{}
		return nil
	}
	for {
		if len(out) < cap(out) {
			out = out[:len(out)+1]
		} else {
			out = append(out, "")
		}
		if err := d.str(field+" element", &out[len(out)-1]); err != nil {
			return err
		}
		more, err := d.next(']', "after array element")
		if !more {
			*s = out
			return err
		}
	}
}

// stringMap decodes an object of strings into *m, adding to a map an
// earlier key made; a null clears it, a null value is "".
func (d *decoder) stringMap(field string, m *map[string]string) error {
	if done, err := begin(d, m, field, "an object of strings", '{'); done {
		return err
	}
	if *m == nil {
		*m = map[string]string{}
	}
	return d.members(func(key []byte) error {
		var v string
		if err := d.str(field+" value", &v); err != nil {
			return err
		}
		(*m)[string(key)] = v
		return nil
	})
}

// wrongType skips the value that is of the wrong type, so that a syntax
// error later in the input is still reported as one, then names the field.
func (d *decoder) wrongType(field, want string) error {
	start := d.pos
	if err := d.skip(); err != nil {
		return err
	}
	end := d.pos
	d.pos = start
	err := d.typeError(field, want)
	d.pos = end
	return err
}

// stringValue reads the string that comes next (d.data[d.pos] is '"').
func (d *decoder) stringValue() (string, error) {
	b, err := d.rawString()
	return string(b), err
}

// rawString reads the string that comes next (d.data[d.pos] is '"'),
// unescaped. Without escapes or invalid UTF-8 it is part of the input, so
// a key compared and dropped costs no allocation.
func (d *decoder) rawString() ([]byte, error) {
	d.pos++
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return d.data[start : d.pos-1], nil
		case c == '\\' || c < 0x20:
			return d.slowString(start)
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && n == 1 {
				return d.slowString(start)
			}
			d.pos += n
		default:
			d.pos++
		}
	}
	return nil, d.syntaxError("in string literal")
}

// slowString decodes a string with escapes or invalid UTF-8 from start,
// the offset after its opening quote.
func (d *decoder) slowString(start int) ([]byte, error) {
	b := append([]byte(nil), d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return b, nil
		case c < 0x20:
			return nil, d.syntaxError("in string literal")
		case c == '\\':
			r, err := d.escape()
			if err != nil {
				return nil, err
			}
			b = utf8.AppendRune(b, r)
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(d.data[d.pos:])
			d.pos += n
			b = utf8.AppendRune(b, r) // utf8.RuneError for an invalid byte
		default:
			b = append(b, c)
			d.pos++
		}
	}
	return nil, d.syntaxError("in string literal")
}

// escape decodes the escape sequence at d.pos, pairing UTF-16 surrogates
// as encoding/json does (an unpaired one is U+FFFD).
func (d *decoder) escape() (rune, error) {
	d.pos++ // '\\'
	if d.pos >= len(d.data) {
		return 0, d.syntaxError("in string escape code")
	}
	c := d.data[d.pos]
	d.pos++
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
		r, err := d.hex4()
		if err != nil {
			return 0, err
		}
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		// A second \u escape completes a pair, or stands on its own.
		if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
			save := d.pos
			d.pos += 2
			r2, err := d.hex4()
			if err != nil {
				return 0, err
			}
			if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
				return dec, nil
			}
			d.pos = save
		}
		return utf8.RuneError, nil
	}
	d.pos--
	return 0, d.syntaxError("in string escape code")
}

func (d *decoder) hex4() (rune, error) {
	var r rune
	for i := 0; i < 4; i++ {
		if d.pos >= len(d.data) {
			return 0, d.syntaxError("in \\u hexadecimal character escape")
		}
		c := d.data[d.pos]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, d.syntaxError("in \\u hexadecimal character escape")
		}
		r = r<<4 | rune(c)
		d.pos++
	}
	return r, nil
}

// skip checks and passes over the value that comes next. Containers are
// followed with an explicit stack, so depth costs no Go stack.
func (d *decoder) skip() error {
	var stack []byte // '{' or '[' of each open container
	for {
		// A value.
		switch c := d.peek(); {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("exceeded max depth at offset %d", d.pos)
			}
			stack = append(stack, c)
			d.pos++
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			if d.peek() == closer {
				d.pos++
				stack = stack[:len(stack)-1]
				break
			}
			if c == '{' {
				if err := d.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if err := d.skipString(); err != nil {
				return err
			}
		case c == 't':
			if err := d.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
		case c == '-' || c >= '0' && c <= '9':
			if err := d.number(); err != nil {
				return err
			}
		default:
			return d.syntaxError("looking for beginning of value")
		}
		// After a value: close containers, or go on to the next element.
		for {
			if len(stack) == 0 {
				return nil
			}
			top := stack[len(stack)-1]
			c := d.peek()
			if c == ',' {
				d.pos++
				if top == '{' {
					if err := d.key(); err != nil {
						return err
					}
				}
				break
			}
			if top == '{' && c == '}' || top == '[' && c == ']' {
				d.pos++
				stack = stack[:len(stack)-1]
				continue
			}
			if top == '{' {
				return d.syntaxError("after object key:value pair")
			}
			return d.syntaxError("after array element")
		}
	}
}

// key passes over an object key and its colon.
func (d *decoder) key() error {
	if d.peek() != '"' {
		return d.syntaxError("looking for beginning of object key string")
	}
	if err := d.skipString(); err != nil {
		return err
	}
	if d.peek() != ':' {
		return d.syntaxError("after object key")
	}
	d.pos++
	return nil
}

// skipString checks and passes over a string (d.data[d.pos] is '"').
func (d *decoder) skipString() error {
	d.pos++
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return nil
		case c < 0x20:
			return d.syntaxError("in string literal")
		case c == '\\':
			if _, err := d.escape(); err != nil {
				return err
			}
		default:
			d.pos++
		}
	}
	return d.syntaxError("in string literal")
}

// number checks and passes over a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() error {
	if d.data[d.pos] == '-' {
		d.pos++
	}
	digits := func(what string) error {
		if d.pos >= len(d.data) || d.data[d.pos] < '0' || d.data[d.pos] > '9' {
			return d.syntaxError(what)
		}
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
		}
		return nil
	}
	if d.pos < len(d.data) && d.data[d.pos] == '0' {
		d.pos++
	} else if err := digits("in numeric literal"); err != nil {
		return err
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if err := digits("after decimal point in numeric literal"); err != nil {
			return err
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if err := digits("in exponent of numeric literal"); err != nil {
			return err
		}
	}
	return nil
}

// optionalTop decodes the top-level value, what, as an object, member by
// member; a top-level null decodes nothing, as with encoding/json.
func optionalTop(d *decoder, what string, member func(key []byte) error) error {
	if isNull, err := d.null(); isNull || err != nil {
		return err
	}
	if d.peek() != '{' {
		return d.wrongType(what, "an object")
	}
	return d.members(member)
}

// integer decodes a number field into an int as encoding/json does: an
// integer that fits, else a type error; a null leaves *n as it was.
func (d *decoder) integer(field string, n *int) error {
	if isNull, err := d.null(); isNull || err != nil {
		return err
	}
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return d.wrongType(field, "an integer")
	}
	start := d.pos
	if err := d.number(); err != nil {
		return err
	}
	v, err := strconv.ParseInt(string(d.data[start:d.pos]), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("%s is the number %s, want an integer of %d bits", field, d.data[start:d.pos], strconv.IntSize)
	}
	*n = int(v)
	return nil
}
