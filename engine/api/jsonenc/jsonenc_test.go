package jsonenc

import (
	"encoding/json"
	"testing"
)

// FuzzString: String writes what json.Marshal writes, for any string.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "<a&b>", "\x00\x1f\b\f\n\r\t", "\u2028\u2029", "\xff\xfe", "é中\U0001F600", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Fatalf("String(%q) = %s, json.Marshal %s", s, got, want)
		}
	})
}

// FuzzStringsAndMap: Strings and StringMap write what json.Marshal writes.
func FuzzStringsAndMap(f *testing.F) {
	f.Add("a", "b", "<c>", true)
	f.Add("", "", "", false)
	f.Fuzz(func(t *testing.T, a, b, c string, isNil bool) {
		ss := []string{a, b, c}
		m := map[string]string{a: b, b: c, c: a}
		if isNil {
			ss, m = nil, nil
		}
		want, _ := json.Marshal(ss)
		if got := Strings(nil, ss); string(got) != string(want) {
			t.Fatalf("Strings(%q) = %s, json.Marshal %s", ss, got, want)
		}
		want, _ = json.Marshal(m)
		if got := StringMap(nil, m); string(got) != string(want) {
			t.Fatalf("StringMap(%q) = %s, json.Marshal %s", m, got, want)
		}
	})
}
