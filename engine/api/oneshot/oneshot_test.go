package oneshot

import (
	"encoding/json"
	"testing"
)

// FuzzValid: Valid agrees with json.Valid, which Line used to call.
func FuzzValid(f *testing.F) {
	for _, s := range replySeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"ociVersion":"1.0.2","id":"c","status":"creating","pid":7,"bundle":"/b"}`, ` 1 `, `"x"`, `{} {}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Valid(data), json.Valid(data); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", data, got, want)
		}
	})
}
