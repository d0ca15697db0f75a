package registry

import (
	"slices"
	"strings"
	"unique"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// sharing makes registrations share what the containers of a node repeat,
// which is most of a registration: a namespace, pod, image or label string
// is kept once, and containers with equal labels or policy lists share one
// map or slice. A restart at 10,000 containers keeps a
// third of the memory it kept with a copy of each per container (-bench
// Open10000, MB-retained). Stored maps and slices are read-only.
//
// The caches live only while one journal is replayed: kept for the store's
// lifetime they would grow with every pod ever seen. A registration made
// later shares its strings through unique.Make (weak: a string no one uses
// goes), which costs more per string than a replay's own table.
type sharing struct {
	strings  map[string]string
	labels   map[string]map[string]string // canonical encoding → shared map
	policies map[string][]string
	key      []byte      // canonical encoding being built, reused
	keys     []string    // label keys being sorted, reused
	pairs    [][2][]byte // labels being decoded (decodeFast), reused
}

// newSharing shares maps and slices as well as strings.
func newSharing() *sharing {
	return &sharing{strings: map[string]string{}, labels: map[string]map[string]string{}, policies: map[string][]string{}}
}

// share makes c's fields shared; sh nil shares strings only. Strings that
// name this container alone are copied: a decoder may have cut them out
// of a buffer that would otherwise stay alive with them.
func (sh *sharing) share(c *api.Container) {
	c.ID = strings.Clone(c.ID)
	c.CgroupPath = strings.Clone(c.CgroupPath)
	c.RootID = strings.Clone(c.RootID)
	c.Rootfs = strings.Clone(c.Rootfs)
	for _, f := range []*string{&c.Namespace, &c.Pod, &c.PodUID, &c.Name, &c.Image, &c.Source, &c.SandboxID} {
		*f = sh.intern(*f)
	}
	if c.Entrypoint != nil {
		c.Entrypoint = sh.internAll(c.Entrypoint)
	}
	c.Labels = sh.shareLabels(c.Labels)
	c.Policies = sh.sharePolicies(c.Policies)
}

// internAll is a copy of ss with its strings shared.
func (sh *sharing) internAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = sh.intern(s)
	}
	return out
}

func (sh *sharing) intern(s string) string {
	switch {
	case s == "":
		return ""
	case sh == nil:
		return unique.Make(s).Value()
	}
	if shared, ok := sh.strings[s]; ok {
		return shared
	}
	s = strings.Clone(s)
	sh.strings[s] = s
	return s
}

func (sh *sharing) shareLabels(labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return labels
	}
	var key []byte
	if sh != nil {
		sh.keys = sh.keys[:0]
		for k := range labels {
			sh.keys = append(sh.keys, k)
		}
		slices.Sort(sh.keys)
		key = sh.key[:0]
		for _, k := range sh.keys {
			key = append(append(append(append(key, k...), 0), labels[k]...), 0)
		}
		sh.key = key
		if shared, ok := sh.labels[string(key)]; ok {
			return shared
		}
	}
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		out[sh.intern(k)] = sh.intern(v)
	}
	if sh != nil {
		sh.labels[string(key)] = out
	}
	return out
}

func (sh *sharing) sharePolicies(names []string) []string {
	if len(names) == 0 {
		return names
	}
	var key []byte
	if sh != nil {
		key = sh.key[:0]
		for _, n := range names {
			key = append(append(key, n...), 0)
		}
		sh.key = key
		if shared, ok := sh.policies[string(key)]; ok {
			return shared
		}
	}
	out := sh.internAll(names)
	if sh != nil {
		sh.policies[string(key)] = out
	}
	return out
}
