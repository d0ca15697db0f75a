package oneshot

import (
	"encoding/json"
	"reflect"
	"testing"
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
