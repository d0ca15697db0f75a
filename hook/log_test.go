package hook

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
)

// TestLogLineIsTheJSONOfTheDecision: the hand-written line decodes, with
// encoding/json, to exactly the decision's fields, whatever the strings
// hold (quotes, control characters, invalid UTF-8, line separators).
func TestLogLineIsTheJSONOfTheDecision(t *testing.T) {
	odd := "a\"b\\c\n\t\x00\x1f<&>\u2028\u2029é\xff\xfe中"
	d := &Decision{
		Time:      time.Date(2026, 12, 2, 5, 0, 0, 123, time.UTC),
		Stage:     ocihook.StageCreateContainer,
		Action:    "register",
		Outcome:   OutcomeFailClosed,
		Reason:    odd,
		Container: api.Container{ID: odd, Namespace: "ns", Pod: odd, Name: "c", Policies: []string{"p1", odd}},
		Cgroup:    Cgroup{ID: 1<<63 + 5, Path: "/a/" + odd, From: "engine"},
		Err:       errors.New(odd),
		Elapsed:   1500 * time.Microsecond,
		Steps:     []Step{{Name: "state", Elapsed: 10 * time.Microsecond}, {Name: "engine", Elapsed: 20 * time.Microsecond}, {Name: "engine", Elapsed: 5 * time.Microsecond}},
	}
	line := d.LogLine()
	if line[len(line)-1] != '\n' {
		t.Fatalf("line %q does not end in a newline", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("line %s: %v", line, err)
	}
	valid := func(s string) string { // what encoding/json makes of a string
		data, _ := json.Marshal(s)
		var out string
		json.Unmarshal(data, &out)
		return out
	}
	want := map[string]any{
		"time": "2026-12-02T05:00:00.000000123Z", "stage": "createContainer", "action": "register",
		"outcome": OutcomeFailClosed, "id": valid(odd), "namespace": "ns", "pod": valid(odd), "container": "c",
		"cgroupId": float64(1<<63 + 5), "cgroupPath": valid("/a/" + odd), "cgroupFrom": "engine",
		"policies": []any{"p1", valid(odd)}, "reason": valid(odd), "error": valid(odd), "elapsedUs": float64(1500),
		"stepsUs": map[string]any{"state": float64(10), "engine": float64(25)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("line %s\ndecodes to %v\nwant       %v", line, got, want)
	}

	// Empty fields are left out, as omitempty did.
	var sparse map[string]any
	if err := json.Unmarshal((&Decision{Time: d.Time, Outcome: OutcomeRegistered}).LogLine(), &sparse); err != nil {
		t.Fatal(err)
	}
	if len(sparse) != 3 { // time, outcome, elapsedUs
		t.Errorf("sparse decision logged %v", sparse)
	}
}
