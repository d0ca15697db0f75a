package ocihook

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// decodeCases are inputs where encoding/json's rules are easy to get
// wrong: case-insensitive keys, repeated keys, nulls, escapes, invalid
// UTF-8, and JSON that is malformed only in a part the decoder skips.
var decodeCases = []string{
	`{}`, `null`, ` null `, `[]`, `"x"`, `5`, `true`, `{} x`, `{}}`, `{"a":1,}`, `{"a" 1}`, `{,}`,
	`{"annotations":{"a":"b","c":"d"}}`,
	`{"annotations":{"io.kubernetes.pod.name":"p","a":"b","io.kubernetes.pod.name":"q","io.kubernetes.pod.nam\u0065":"r"}}`,
	`{"annotations":{"a":1,"io.kubernetes.pod.name":"p"}}`, `{"annotations":{"io.kubernetes.cri-o.Labels":{}}}`,
	`{"annotations":{"IO.KUBERNETES.POD.NAME":"p"}}`,
	`{"Annotations":{"a":"b"},"ANNOTATIONS":{"c":"d"}}`,
	`{"annotations":{"a":"b"},"annotations":null,"annotations":{"c":"d"}}`,
	`{"annotations":{"a":null}}`, `{"annotations":[]}`, `{"annotations":{"a":1}}`, `{"annotations":"x"}`,
	`{"annotations":{"a":"\u00e9\ud83d\ude00\ud800x\u0041\n\"\\\/"}}`,
	"{\"annotations\":{\"a\":\"\xff\xfe\",\"\xc3\":\"b\"}}",
	"{\"annotations\":{\"a\":\"\x01\"}}",
	`{"annotation\u0073":{"a":"b"}}`,
	"{\"annotation\u017f\":{\"a\":\"b\"}}", // ſ folds to s
	"{\"lİnux\":{\"cgroupsPath\":\"/x\"}}", // İ does not fold to i
	`{"linux":{"cgroupsPath":"/a"},"linux":{"other":1}}`,
	`{"linux":{"cgroupsPath":"/a"},"linux":null,"linux":{}}`,
	`{"linux":{"cgroupspath":"/a","cgroupsPath":null}}`,
	`{"linux":{"cgroupsPath":5}}`, `{"linux":[]}`, `{"linux":"x"}`, `{"linux":5}`,
	`{"root":{"path":"rootfs","readonly":true}}`, `{"root":{"path":null}}`, `{"root":{"Path":"a","PATH":"b"}}`,
	`{"process":{"args":["a","b"]}}`, `{"process":{"args":[]}}`, `{"process":{"args":null}}`,
	`{"process":{"args":["a","b","c"],"args":["x",null]}}`,
	`{"process":{"args":["a",null]}}`, `{"process":{"args":[1]}}`, `{"process":{"args":"a"}}`,
	`{"process":{"args":["a"}}`, `{"process":{"args":["a",]}}`,
	`{"x":[1,-2.5e+3,0,-0,1E9,true,false,null,{"a":[{}]},[],""]}`,
	`{"x":01}`, `{"x":-}`, `{"x":1.}`, `{"x":1e}`, `{"x":.5}`, `{"x":+1}`, `{"x":tru}`, `{"x":nul}`, `{"x":"\x"}`,
	`{"x":"\u12"}`, `{"x":"\ud800\u12"}`, `{"x":[}`, `{"x":{]}`, `{"x":{"a"}}`, `{"x":{1:2}}`, `{"x":[1 2]}`,
	`{"x":"a`, `{"x":`, `{"x"`, `{`, `{"annotations":{"a":"b"}`, ` `, "\ufeff{}",
	`{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0},"args":["sh"],"env":["A=b"]},"root":{"path":"/r"},"linux":{"cgroupsPath":"a:b:c","namespaces":[{"type":"pid"}]}}`,
}

// TestDecodeBundleConfigMatchesEncodingJSON: the one-pass decoder accepts
// what json.Unmarshal accepts and decodes it to the same BundleConfig.
func TestDecodeBundleConfigMatchesEncodingJSON(t *testing.T) {
	cases := append(decodeCases, string(runcConfig(t)))
	for _, in := range cases {
		checkMatches(t, []byte(in), decodeBundleConfig, configIdentity)
	}
}

// configIdentity and stateIdentity keep of encoding/json's annotations
// those the decoders keep.
func configIdentity(c *BundleConfig) { identityOnly(c.Annotations) }
func stateIdentity(st *specs.State)  { identityOnly(st.Annotations) }

func identityOnly(annotations map[string]string) {
	for k := range annotations {
		if !isIdentityKey([]byte(k)) {
			delete(annotations, k)
		}
	}
}

// FuzzDecodeBundleConfig is TestDecodeBundleConfigMatchesEncodingJSON
// over arbitrary input:
//
//	go test -run '^$' -fuzz FuzzDecodeBundleConfig ./engine/api/ocihook/
func FuzzDecodeBundleConfig(f *testing.F) {
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkMatches(t, data, decodeBundleConfig, configIdentity) })
}

// stateCases are the same for the state: the pid is an int that must fit.
var stateCases = []string{
	`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"a":"b"}}`,
	`{"ID":"c1","Status":"created","PID":-0,"Bundle":null}`, `{"id":"c1","pid":null}`, `{"id":5}`, `{"status":{}}`,
	`{"pid":1.0}`, `{"pid":1e2}`, `{"pid":"1"}`, `{"pid":-9223372036854775808}`, `{"pid":9223372036854775808}`,
	`{"pid":99999999999999999999}`, `{"pid":-}`, `{"pid":01}`, `{"pid":true}`, `{"pid":[1]}`,
	`{"id":"a","id":"b","pid":1,"pid":2}`, `{"annotations":{"a":"b"},"annotations":{"c":"d"}}`, `{"id":"\u0000"}`,
}

// TestDecodeStateMatchesEncodingJSON is
// TestDecodeBundleConfigMatchesEncodingJSON for the OCI state.
func TestDecodeStateMatchesEncodingJSON(t *testing.T) {
	for _, in := range append(decodeCases, stateCases...) {
		checkMatches(t, []byte(in), decodeState, stateIdentity)
	}
}

// FuzzDecodeState is TestDecodeStateMatchesEncodingJSON over arbitrary input:
//
//	go test -run '^$' -fuzz FuzzDecodeState ./engine/api/ocihook/
func FuzzDecodeState(f *testing.F) {
	for _, in := range append(decodeCases, stateCases...) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkMatches(t, data, decodeState, stateIdentity) })
}

// checkMatches fails unless decode and json.Unmarshal both refuse data or
// both decode it to the same value, once kept applies the decoder's
// filter to encoding/json's.
func checkMatches[T any](t *testing.T, data []byte, decode func([]byte) (*T, error), kept func(*T)) {
	t.Helper()
	var want T
	wantErr := json.Unmarshal(data, &want)
	kept(&want)
	got, err := decode(data)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Errorf("%q: error %v, encoding/json's %v", data, err, wantErr)
	case err == nil && !reflect.DeepEqual(*got, want):
		t.Errorf("%q: decoded %#v, encoding/json %#v", data, *got, want)
	}
}

// TestDecodeErrorsNameWhatWasWrong: a refusal names the field of the wrong
// type, or the offset where the JSON broke.
func TestDecodeErrorsNameWhatWasWrong(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"linux":5}`, "malformed config.json: linux: want an object before byte 10"},
		{`{"linux":{"cgroupsPath":true}}`, "linux.cgroupsPath: want a string"},
		{`{"process":{"args":["a",{}]}}`, "process.args: want a string"},
		{`{"annotations":{"a":["b"]}}`, "annotations: want a string"},
		{`[]`, "config.json: want an object"},
		{`{"root":{"path":"a"} x`, "invalid JSON at byte 21: want ',' or '}'"},
		{`{"mounts":[{"type":"bind",}]}`, "invalid JSON at byte 26: want a key"},
	}
	for _, tt := range tests {
		_, err := ParseBundleConfig([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseBundleConfig(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
	if _, err := ParseState([]byte(`{"id":"c1","pid":1.5}`)); err == nil || !strings.Contains(err.Error(), "malformed OCI state JSON on stdin: pid: number 1.5 before byte 20 is not an integer") {
		t.Errorf("fractional pid: %v", err)
	}
}

// FuzzParseLabels: ParseLabels takes what json.Unmarshal takes into a
// map of strings, with the same labels, and refuses the rest.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{`{}`, `null`, `{"app":"web","tier":"\u003cx\u003e"}`, `{"a":1}`, `{"a":null}`, `{"a":"b"} x`, `[]`, `{"a":"b","a":"c"}`, `{" ":"x"}`, "{\"\xff\":\"v\"}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ParseLabels(raw)
		var want map[string]string
		jerr := json.Unmarshal([]byte(raw), &want)
		if jerr != nil {
			if err == nil {
				t.Fatalf("ParseLabels(%q) = %v, json.Unmarshal refuses it: %v", raw, got, jerr)
			}
			return
		}
		if err != nil {
			// Refused on its own rules only: too many labels, an empty key.
			if len(want) > maxLabels || hasBlankKey(want) {
				return
			}
			t.Fatalf("ParseLabels(%q): %v; json.Unmarshal gives %v", raw, err, want)
		}
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseLabels(%q) = %v, json.Unmarshal gives %v", raw, got, want)
		}
	})
}

func hasBlankKey(m map[string]string) bool {
	for k := range m {
		if strings.TrimSpace(k) == "" {
			return true
		}
	}
	return false
}
