package registry

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// TestDecodeFastAgreesWithJSON checks decodeFast against encoding/json on
// lines as the journal writes them: every line it takes decodes to the
// same entry, and plain lines — a container with every field set among
// them, so a new field of api.Container is noticed here — do take it.
func TestDecodeFastAgreesWithJSON(t *testing.T) {
	full := api.Container{}
	v := reflect.ValueOf(&full).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(strings.ToLower(v.Type().Field(i).Name) + "-value")
		case reflect.Uint64, reflect.Uint32:
			f.SetUint(18446744073709551615 >> (64 - f.Type().Bits()))
		case reflect.Int:
			f.SetInt(2147483647)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a", "b c"}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"app": "web", "tier": "front", "ä": "ö"}))
		default:
			t.Fatalf("api.Container.%s: a %s field decodeFast does not know", v.Type().Field(i).Name, f.Kind())
		}
	}
	plain := []entry{
		{Op: "boot", BootID: "2f6d0c1e-9a4b-4e8e-9d1b-6f1d2a3b4c5d"},
		{Op: "next-ruleset", Ruleset: 4294967295},
		{Op: "ruleset", Key: "d1|locked@abc,web@def|locked=audit", Ruleset: 7},
		{Op: "forget-ruleset", Key: "k", Ruleset: 1},
		{Op: "delete", ID: "ctr-1"},
		{Op: "put", Container: &full},
		{Op: "put", Container: &api.Container{ID: "ctr-2", CgroupID: 1, Labels: map[string]string{}, Policies: []string{}}},
		{Op: "put", Container: &api.Container{ID: "ünïcode", Namespace: "日本"}},
	}
	escaped := []entry{
		{Op: "delete", ID: `quote " backslash \ newline` + "\n"},
		{Op: "put", Container: &api.Container{ID: "<html>&", Labels: map[string]string{"a\tb": "c"}}},
		{Op: "put", Container: &api.Container{ID: "bad utf-8 \xff"}},
	}
	for i, e := range append(plain, escaped...) {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var want entry
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatal(err)
		}
		var got entry
		ok := decodeFast(line, newSharing(), &got)
		if i < len(plain) && !ok {
			t.Errorf("decodeFast refused a plain line: %s", line)
		}
		if ok && !reflect.DeepEqual(got, want) {
			t.Errorf("decodeFast(%s)\n got %+v %+v\nwant %+v %+v", line, got, got.Container, want, want.Container)
		}
	}
}

// TestDecodeFastRefuses checks that lines outside the shape encoding/json
// writes go to the general decoder instead of decoding differently.
func TestDecodeFastRefuses(t *testing.T) {
	for _, line := range []string{
		`{"op":"put","container":null}`,
		`{"op":"put","container":{"ID":"case differs"}}`,
		`{"op":"put","container":{"id":"x","unknown":1}}`,
		`{"op":"put","container":{"id":"x","cgroupId":1.5}}`,
		`{"op":"put","container":{"id":"x","cgroupId":1e3}}`,
		`{"op":"put","container":{"id":"x","cgroupId":012}}`,
		`{"op":"put","container":{"id":"x","cgroupId":18446744073709551616}}`,
		`{"op":"put","container":{"id":"x","cgroupId":-1}}`,
		`{"op":"put","container":{"id":"x","pid":2147483648}}`,
		`{"op":"ruleset","ruleset":4294967296}`,
		`{"op":"delete","id":"a\"b"}`,
		`{"op":"delete","id":"a"} trailing`,
		`{"op":"delete","id":"a"`,
		`{"op":"put","container":{"id":"x","labels":{"a":1}}}`,
		`{"op":"put","container":{"id":"x","sandbox":tru}}`,
		"{\"op\":\"delete\",\"id\":\"bad \xff\"}",
		"{\"op\":\"delete\",\"id\":\"ctl \x01\"}",
	} {
		if decodeFast([]byte(line), newSharing(), &entry{}) {
			t.Errorf("decodeFast took %s", line)
		}
	}
}

// TestDecodeFastSharesLabels checks equal labels decode to one map, a
// repeated key keeping its last value as with encoding/json.
func TestDecodeFastSharesLabels(t *testing.T) {
	sh := newSharing()
	var a, b, c entry
	for _, d := range []struct {
		line string
		e    *entry
	}{
		{`{"op":"put","container":{"id":"a","labels":{"tier":"front","app":"web"}}}`, &a},
		{`{"op":"put","container":{"id":"b","labels":{"app":"web","tier":"front"}}}`, &b},
		{`{"op":"put","container":{"id":"c","labels":{"app":"db","tier":"front","app":"web"}}}`, &c},
	} {
		if !decodeFast([]byte(d.line), sh, d.e) {
			t.Fatalf("refused %s", d.line)
		}
	}
	if reflect.ValueOf(a.Container.Labels).UnsafePointer() != reflect.ValueOf(b.Container.Labels).UnsafePointer() {
		t.Error("equal labels decoded to two maps")
	}
	var want entry
	json.Unmarshal([]byte(`{"op":"put","container":{"id":"c","labels":{"app":"db","tier":"front","app":"web"}}}`), &want)
	if !reflect.DeepEqual(c.Container.Labels, want.Container.Labels) {
		t.Errorf("repeated key: %v, encoding/json says %v", c.Container.Labels, want.Container.Labels)
	}
}

// FuzzDecodeFast: on any input decodeFast either refuses or agrees with
// encoding/json, and never panics.
//
//	go test -run '^$' -fuzz FuzzDecodeFast -fuzztime 30s ./engine/registry/
func FuzzDecodeFast(f *testing.F) {
	for _, seed := range []string{
		`{"op":"boot","bootId":"b"}`,
		`{"op":"put","container":{"id":"a","cgroupId":5,"labels":{"app":"web"},"policies":["p"],"pid":3,"sandbox":true}}`,
		`{"op":"ruleset","key":"k","ruleset":2}`,
		`{"op":"put","container":{"id":"a","labels":{}}}`,
		`{"op":"delete","id":"x"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var got entry
		if !decodeFast(line, newSharing(), &got) {
			return
		}
		var want entry
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("decodeFast took %q, which encoding/json refuses: %v", line, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeFast(%q) = %+v %+v, encoding/json: %+v %+v", line, got, got.Container, want, want.Container)
		}
	})
}
