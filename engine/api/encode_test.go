package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// FuzzAppendContainer: AppendContainer writes what json.Marshal writes,
// field by field, set or empty.
func FuzzAppendContainer(f *testing.F) {
	f.Add("c1", uint64(7), "/sys/fs/cgroup/x", "ns", "<pod>", "uid", "k", "v\n", "main", "img:1", "oci-hook", "p", -3, "/rootfs", "sh", "1:2", uint64(9), uint64(10), true, "sb", true)
	f.Add("", uint64(0), "", "", "", "", "", "", "", "", "", "", 0, "", "", "", uint64(0), uint64(0), false, "", false)
	f.Fuzz(func(t *testing.T, id string, cg uint64, path, ns, pod, uid, lk, lv, name, image, source, policy string, pid int, rootfs, arg, rootID string, mntNS, newest uint64, sandbox bool, sandboxID string, peer bool) {
		c := Container{ID: id, CgroupID: cg, CgroupPath: path, Namespace: ns, Pod: pod, PodUID: uid, Name: name, Image: image,
			Source: source, Pid: pid, Rootfs: rootfs, RootID: rootID, RootMountNS: mntNS, RootNewestMount: newest,
			Sandbox: sandbox, SandboxID: sandboxID, PeerInContainer: peer}
		if lk != "" {
			c.Labels = map[string]string{lk: lv, lv: lk}
		} else if lv != "" {
			c.Labels = map[string]string{} // empty, not nil: omitted too
		}
		if policy != "" {
			c.Policies = []string{policy, lk}
		}
		if arg != "" {
			c.Entrypoint = []string{arg}
		} else if policy == "" {
			c.Entrypoint = []string{}
		}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendContainer(nil, &c); string(got) != string(want) {
			t.Fatalf("AppendContainer:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}

// TestAppendContainerCoversEveryField: a field added to Container must be
// added to AppendContainer, or this fails.
func TestAppendContainerCoversEveryField(t *testing.T) {
	var c Container
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Uint64:
			f.SetUint(1)
		case reflect.Int:
			f.SetInt(1)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"x"}))
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"x": "y"}))
		default:
			t.Fatalf("field %s of kind %s: teach AppendContainer and this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	want, _ := json.Marshal(c)
	if got := AppendContainer(nil, &c); string(got) != string(want) {
		t.Fatalf("AppendContainer misses a field:\n%s\njson.Marshal:\n%s", got, want)
	}
}

// TestAppendResponseIsMarshal: every field of a Response, alone and all
// together, is written as encoding/json writes it; a field added to
// Response and not to appendResponse fails here.
func TestAppendResponseIsMarshal(t *testing.T) {
	c := &Container{ID: "c<1>", CgroupID: 3, Labels: map[string]string{"b": "2", "a": "1"}, Policies: []string{"p"}}
	values := map[string]any{
		"Error": "bad \"thing\"\n", "Code": CodeCannotEnforce, "NotFound": true, "Container": c, "Removed": c,
		"Containers": []Container{*c}, "Status": &Status{ABI: "v3"}, "Explain": &Explanation{},
		"Steps": oneshot.Steps{{Name: "request", Us: 12}, {Name: "a<b>&", Us: 0}},
	}
	typ := reflect.TypeOf(Response{})
	var all Response
	for i := 0; i < typ.NumField(); i++ {
		name := typ.Field(i).Name
		v, ok := values[name]
		if !ok {
			t.Fatalf("Response.%s has no test value: teach appendResponse and this test", name)
		}
		var one Response
		reflect.ValueOf(&one).Elem().Field(i).Set(reflect.ValueOf(v))
		reflect.ValueOf(&all).Elem().Field(i).Set(reflect.ValueOf(v))
		check(t, &one)
	}
	check(t, &all)
	all.Containers, all.Status, all.Explain = nil, nil, nil
	check(t, &all)
	check(t, &Response{})
}

func check(t *testing.T, r *Response) {
	t.Helper()
	want, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendResponse(nil, r)
	if err != nil || string(got) != string(want)+"\n" {
		t.Errorf("appendResponse = %s (%v), json.Marshal %s", got, err, want)
	}
}
