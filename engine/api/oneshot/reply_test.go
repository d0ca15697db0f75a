package oneshot

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// replySeeds are answers an engine sends and near misses of them.
var replySeeds = []string{
	`{"container":{"id":"c1","cgroupId":49964705,"cgroupPath":"/sys/fs/cgroup/unified/k/c1","namespace":"hooktest","pod":"p","container":"main","podUid":"uid-p","labels":{"app":"web","tier":["a",{"b":null}]},"image":"busybox","policies":["allowlist","egress"],"source":"hook","pid":1234,"started":1.5e3,"ok":true}}`,
	`{"error":"hook run at createRuntime: container c1: read bundle config: open /b/config.json: no such file or directory"}`,
	`{"error":"refused","code":"cannot-enforce"}`,
	`{"error":"container c1 not found","notFound":true}`,
	`{"removed":{"id":"c1","namespace":"shop","pod":"web","container":"main","policies":["p"]}}`, `{"removed":null,"removed":{"id":"x"}}`,
	`{"removed":{"id":"a"},"removed":null}`, `{"removed":7}`,
	`{}`, `null`, ` {"container":null} `, `{"container":{}}`, `{"container":{"policies":[]}}`,
	`{"container":{"policies":null,"id":null,"cgroupId":null}}`,
	`{"container":{"id":"a"},"container":{"pod":"b"}}`,
	`{"container":{"policies":["a","b"]},"container":{"policies":["c"]}}`,
	`{"ID":"x","Container":{"ID":"k","CGROUPID":7}}`,
	`{"container":{"id":"\u00e9\ud83d\ude00\ud800x\"\\\/\b\f\n\r\t"}}`,
	"{\"container\":{\"id\":\"\xff\xfe ok\"}}",
	`{"container":{"cgroupId":-1}}`, `{"container":{"cgroupId":1.5}}`, `{"container":{"cgroupId":1e3}}`,
	`{"container":{"cgroupId":18446744073709551616}}`, `{"container":{"cgroupId":"7"}}`,
	`{"container":{"id":7}}`, `{"container":[]}`, `{"notFound":"yes"}`, `{"container":{"policies":["a",1]}}`,
	`{"container":{"policies":["a",null]}}`,
	`{"container":{"id":"c"},"stepsUs":{"request":12,"config":80,"cgroup":0}}`, `{"stepsUs":null}`, `{"stepsUs":{}}`,
	`{"stepsUs":{"a":1,"a":2}}`, `{"stepsUs":{"a":1},"stepsUs":null}`, `{"stepsUs":{"a":1},"stepsUs":{"b":2}}`,
	`{"StepsUS":{"x":-1}}`, `{"stepsUs":{"a":1.5}}`, `{"stepsUs":{"a":"1"}}`, `{"stepsUs":[]}`, `{"stepsUs":{"a":null}}`,
	`{"error":"x"} {}`, `{"error":"x",}`, `{"error" "x"}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`,
	`{"a":tru}`, `{"a":truex}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", `{"a":[1,]}`, `{"a":"`, ``, `[]`,
}

// FuzzDecodeReply: the hand-written decoder agrees with encoding/json
// on every input: both refuse it, or both read the same answer.
func FuzzDecodeReply(f *testing.F) {
	for _, s := range replySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want Reply
		wantErr := json.Unmarshal(data, &want)
		got, err := DecodeReply(data)
		if (wantErr == nil) != (err == nil) {
			t.Fatalf("%q: encoding/json says %v, DecodeReply says %v", data, wantErr, err)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: encoding/json reads %+v (container %+v), DecodeReply %+v (container %+v)", data, want, want.Container, got, got.Container)
		}
	})
}

// TestStepsKeepTheirOrder: steps go out as one object in the order they
// ended and come back in that order, through encoding/json too.
func TestStepsKeepTheirOrder(t *testing.T) {
	in := Steps{{"request", 12}, {"config", 80}, {"cgroup", 0}, {"a\"b", 7}}
	data, err := json.Marshal(struct {
		Steps Steps `json:"stepsUs,omitempty"`
	}{in})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"stepsUs":{"request":12,"config":80,"cgroup":0,"a\"b":7}}`; string(data) != want {
		t.Fatalf("marshalled %s, want %s", data, want)
	}
	r, err := DecodeReply(data)
	if err != nil || !reflect.DeepEqual(r.Steps, in) {
		t.Fatalf("DecodeReply = %+v, %v; want steps %+v", r.Steps, err, in)
	}
	var viaJSON Reply
	if err := json.Unmarshal(data, &viaJSON); err != nil || !reflect.DeepEqual(viaJSON.Steps, in) {
		t.Fatalf("json.Unmarshal = %+v, %v; want steps %+v", viaJSON.Steps, err, in)
	}
	timer := NewStepTimer(time.Now().Add(-time.Millisecond))
	timer.End("first")
	timer.End("second")
	if s := timer.Steps(); len(s) != 2 || s[0].Name != "first" || s[0].Us < 1000 || s[1].Name != "second" || s[1].Us < 0 {
		t.Fatalf("timer steps %+v: want first ≥ 1000 µs (it began a millisecond before), then second", s)
	}
}
