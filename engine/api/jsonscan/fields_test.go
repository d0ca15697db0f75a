package jsonscan

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fields is a struct of every kind the readers in fields.go fill in.
type fields struct {
	N   int               `json:"n"`
	M   map[string]string `json:"m"`
	L   []string          `json:"l"`
	Sub *struct {
		S string `json:"s"`
	} `json:"sub"`
}

// TestFieldsMatchEncodingJSON: Int, StringMap, Optional and Strings
// decode as json.Unmarshal does, repeated keys and nulls included, and
// refuse what it refuses.
func TestFieldsMatchEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"n":-42,"m":{"a":"b","c":null},"l":["x","y"],"sub":{"s":"v"}}`,
		`{"m":{"a":"b"},"m":{"c":"d"},"m":null,"m":{"e":"f"}}`,
		`{"l":["a","b","c"],"l":["x",null]}`, `{"l":[]}`, `{"l":null}`,
		`{"sub":{"s":"a"},"sub":{}}`, `{"sub":{"s":"a"},"sub":null}`, `{"sub":null,"sub":{"s":"b"}}`,
		`{"n":1.5}`, `{"n":1e3}`, `{"n":"1"}`, `{"n":99999999999999999999}`, `{"n":null}`,
		`{"m":[]}`, `{"m":{"a":1}}`, `{"sub":5}`, `{"l":[1]}`,
	} {
		var want fields
		wantErr := json.Unmarshal([]byte(in), &want)
		var got fields
		s := New([]byte(in))
		err := s.Object(func(key string) error {
			switch key {
			case "n":
				return s.Int(&got.N)
			case "m":
				return s.StringMap(&got.M)
			case "l":
				return s.Strings(&got.L)
			case "sub":
				return Optional(s, &got.Sub, func(key string) error {
					if key == "s" {
						return s.String(&got.Sub.S)
					}
					return s.Skip()
				})
			}
			return s.Skip()
		})
		if (err == nil) != (wantErr == nil) {
			t.Errorf("%s: error %v, encoding/json's %v", in, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: read %+v, encoding/json %+v", in, got, want)
		}
		if err != nil && !strings.Contains(err.Error(), "before byte") {
			t.Errorf("%s: error %v does not say where", in, err)
		}
	}
}

// TestStringMapOfIsStringMapFiltered: StringMapOf keeps what StringMap
// reads for the keys it keeps (escaped keys compared decoded), and refuses
// what StringMap refuses, in a kept value or not.
func TestStringMapOfIsStringMapFiltered(t *testing.T) {
	keep := func(key []byte) bool { return strings.HasPrefix(string(key), "k") }
	for _, in := range []string{
		`{}`, `null`, `{"k1":"a","x":"b","k2":null}`, `{"k1":"a","k1":"b","x":"c"}`,
		`{"\u006b1":"a","x":"\u00e9\n"}`, `{"x":"\ud800","k":"\"\\"}`, "{\"x\":\"\xff\",\"k\":\"\xfe\"}",
		`{"x":1}`, `{"k":1}`, `{"x":{}}`, `{"x":[]}`, `{"x":true}`, `{"x":"a`, `{"x":"\q"}`, `[]`, `"s"`, `{"x":"a",}`,
	} {
		var want, got map[string]string
		wantErr := New([]byte(in)).StringMap(&want)
		for k := range want {
			if !keep([]byte(k)) {
				delete(want, k)
			}
		}
		err := New([]byte(in)).StringMapOf(&got, keep)
		if (err == nil) != (wantErr == nil) {
			t.Errorf("%s: error %v, StringMap's %v", in, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: read %#v, want %#v", in, got, want)
		}
	}
}
