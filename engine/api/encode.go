package api

import (
	"encoding/json"
	"strconv"

	"github.com/holdfast-dev/holdfast/engine/api/jsonenc"
)

// AppendContainer appends c exactly as json.Marshal encodes it, without
// reflection: a registration's journal line and its answer are on the path
// a container start waits for. FuzzAppendContainer holds it to Marshal.
func AppendContainer(b []byte, c *Container) []byte {
	b = append(b, `{"id":`...)
	b = jsonenc.String(b, c.ID)
	str := func(key, v string) {
		if v != "" {
			b = append(b, key...)
			b = jsonenc.String(b, v)
		}
	}
	num := func(key string, v uint64) {
		if v != 0 {
			b = append(b, key...)
			b = strconv.AppendUint(b, v, 10)
		}
	}
	flag := func(key string, v bool) {
		if v {
			b = append(b, key...)
			b = append(b, "true"...)
		}
	}
	num(`,"cgroupId":`, c.CgroupID)
	str(`,"cgroupPath":`, c.CgroupPath)
	str(`,"namespace":`, c.Namespace)
	str(`,"pod":`, c.Pod)
	str(`,"podUid":`, c.PodUID)
	if len(c.Labels) > 0 {
		b = append(b, `,"labels":`...)
		b = jsonenc.StringMap(b, c.Labels)
	}
	str(`,"container":`, c.Name)
	str(`,"image":`, c.Image)
	str(`,"source":`, c.Source)
	if len(c.Policies) > 0 {
		b = append(b, `,"policies":`...)
		b = jsonenc.Strings(b, c.Policies)
	}
	if c.Pid != 0 {
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(c.Pid), 10)
	}
	str(`,"rootfs":`, c.Rootfs)
	if len(c.Entrypoint) > 0 {
		b = append(b, `,"entrypoint":`...)
		b = jsonenc.Strings(b, c.Entrypoint)
	}
	str(`,"rootId":`, c.RootID)
	num(`,"rootMountNs":`, c.RootMountNS)
	num(`,"rootNewestMount":`, c.RootNewestMount)
	flag(`,"sandbox":`, c.Sandbox)
	str(`,"sandboxId":`, c.SandboxID)
	flag(`,"peerInContainer":`, c.PeerInContainer)
	return append(b, '}')
}

// appendResponse appends r's line. The answers registrars wait for (a
// container, an error) are written by hand, the rest by encoding/json;
// both write the same (TestAppendResponseIsMarshal).
func appendResponse(b []byte, r *Response) ([]byte, error) {
	if len(r.Containers) > 0 || r.Status != nil || r.Explain != nil {
		line, err := json.Marshal(r)
		return append(append(b, line...), '\n'), err
	}
	b = append(b, '{')
	first := len(b)
	key := func(k string) {
		if len(b) > first {
			b = append(b, ',')
		}
		b = append(b, k...)
	}
	if r.Error != "" {
		key(`"error":`)
		b = jsonenc.String(b, r.Error)
	}
	if r.Code != "" {
		key(`"code":`)
		b = jsonenc.String(b, r.Code)
	}
	if r.NotFound {
		key(`"notFound":true`)
	}
	if r.Container != nil {
		key(`"container":`)
		b = AppendContainer(b, r.Container)
	}
	if r.Removed != nil {
		key(`"removed":`)
		b = AppendContainer(b, r.Removed)
	}
	if len(r.Steps) > 0 {
		key(`"stepsUs":`)
		b = r.Steps.AppendJSON(b)
	}
	return append(b, '}', '\n'), nil
}
