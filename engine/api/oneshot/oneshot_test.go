package oneshot

import (
	"encoding/json"
	"strings"
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

func TestParseLine(t *testing.T) {
	state := `{"ociVersion":"1.0.2","id":"c","status":"creating","pid":7,"bundle":"/b"}`
	line, err := Line("createRuntime", []byte(state))
	if err != nil {
		t.Fatal(err)
	}
	stage, got, ok := ParseLine(line)
	if !ok || stage != "createRuntime" || string(got) != state {
		t.Fatalf("ParseLine(Line(...)) = %q, %q, %v", stage, got, ok)
	}
	for _, bad := range []string{
		`{"op":"list"}` + "\n",
		`{"op":"hook","hook":{"stage":"createRuntime","state":` + state + `}}`, // no newline
		`{"op":"hook","hook":{"stage":"createRuntime","state":` + state + `}}` + "\n{}\n",
		`{"op":"hook","hook":{"stage":"createRuntime","state": ` + state + `}}` + "\n",
		`{"op":"hook","hook":{"stage":"","state":` + state + `}}` + "\n",
		`{"op":"hook","hook":{"stage":"create\"x","state":` + state + `}}` + "\n",
		`{"op":"hook","hook":{"stage":"createRuntime","state":` + state[:20] + `}}` + "\n",
		`{"op":"hook","hook":{"stage":"createRuntime","state":{} {}}}` + "\n",
		`{"op":"hook","id":"x","hook":{"stage":"createRuntime","state":` + state + `}}` + "\n",
	} {
		if stage, got, ok := ParseLine([]byte(bad)); ok {
			t.Errorf("ParseLine(%q) = %q, %q, ok", bad, stage, got)
		}
	}
}

// FuzzParseLine: a line ParseLine takes is exactly what Line writes for
// its stage and state, and decodes to the same request in full.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{`{}`, `{"id":"c","pid":7}`, `[1,2]`, `"x"`} {
		line, _ := Line("poststop", []byte(s))
		f.Add(line)
	}
	f.Add([]byte(`{"op":"hook","hook":{"stage":"x","state":{} }}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		stage, state, ok := ParseLine(data)
		if !ok {
			return
		}
		line, err := Line(stage, state)
		if err != nil || string(line) != string(data) {
			t.Fatalf("ParseLine(%q) = %q, %q; Line gives %q, %v", data, stage, state, line, err)
		}
		var req struct {
			Op   string `json:"op"`
			Hook *struct {
				Stage string          `json:"stage"`
				State json.RawMessage `json:"state"`
			} `json:"hook"`
		}
		if err := json.Unmarshal(data, &req); err != nil {
			t.Fatalf("ParseLine took %q, which does not decode: %v", data, err)
		}
		if req.Op != Op || req.Hook == nil || req.Hook.Stage != stage || string(req.Hook.State) != string(state) {
			t.Fatalf("ParseLine(%q) = %q, %q; decoding gives %+v", data, stage, state, req)
		}
	})
}

// TestParseLineNestingBound: a state nested as deep as the decoder takes
// inside its request is taken, one level more is not, as the decoder does.
func TestParseLineNestingBound(t *testing.T) {
	for depth := 9990; depth <= 10002; depth++ {
		state := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		line := `{"op":"hook","hook":{"stage":"createRuntime","state":` + state + "}}\n"
		var req struct {
			Hook struct {
				State json.RawMessage `json:"state"`
			} `json:"hook"`
		}
		decoded := json.Unmarshal([]byte(line), &req) == nil
		if _, _, ok := ParseLine([]byte(line)); ok != decoded {
			t.Errorf("state nested %d deep: ParseLine ok %v, the decoder takes it: %v", depth, ok, decoded)
		}
	}
}
