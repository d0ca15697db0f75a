package registry

import (
	"slices"
	"unicode/utf8"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// decodeFast decodes a journal line as encoding/json writes an entry,
// straight into shared strings, maps and slices (no per-line map or buffer
// to throw away). It handles only that shape: it returns false on anything
// else — an escaped or invalid UTF-8 string, an unknown or differently
// cased field, null, a number that is not a plain integer — and the caller
// decodes the line with the general decoder, so a line decodes to the same
// entry either way.
func decodeFast(line []byte, sh *sharing, e *entry) bool {
	sc := scanner{b: line}
	ok := sc.object(func(key []byte) bool {
		switch string(key) {
		case "op":
			return sc.str(&e.Op, sh.internBytes)
		case "bootId":
			return sc.str(&e.BootID, copyBytes)
		case "id":
			return sc.str(&e.ID, copyBytes)
		case "key":
			return sc.str(&e.Key, sh.internBytes)
		case "ruleset":
			n, ok := sc.uint(32)
			e.Ruleset = uint32(n)
			return ok
		case "container":
			e.Container = &api.Container{}
			return sc.container(e.Container, sh)
		}
		return false
	})
	sc.ws()
	return ok && sc.i == len(sc.b)
}

func (sc *scanner) container(c *api.Container, sh *sharing) bool {
	// One case per field: a table of them costs a map or a method value
	// per container (-bench Open10000, allocs/op).
	return sc.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			return sc.str(&c.ID, copyBytes)
		case "cgroupId":
			n, ok := sc.uint(64)
			c.CgroupID = n
			return ok
		case "cgroupPath":
			return sc.str(&c.CgroupPath, copyBytes)
		case "namespace":
			return sc.str(&c.Namespace, sh.internBytes)
		case "pod":
			return sc.str(&c.Pod, sh.internBytes)
		case "podUid":
			return sc.str(&c.PodUID, sh.internBytes)
		case "labels":
			return sc.labels(&c.Labels, sh)
		case "container":
			return sc.str(&c.Name, sh.internBytes)
		case "image":
			return sc.str(&c.Image, sh.internBytes)
		case "source":
			return sc.str(&c.Source, sh.internBytes)
		case "policies":
			var names []string
			if !sc.strings(&names, sh) {
				return false
			}
			c.Policies = sh.sharePolicies(names)
			return true
		case "pid":
			n, ok := sc.uint(31)
			c.Pid = int(n)
			return ok
		case "rootfs":
			return sc.str(&c.Rootfs, copyBytes)
		case "entrypoint":
			return sc.strings(&c.Entrypoint, sh)
		case "rootId":
			return sc.str(&c.RootID, copyBytes)
		case "rootMountNs":
			n, ok := sc.uint(64)
			c.RootMountNS = n
			return ok
		case "rootNewestMount":
			n, ok := sc.uint(64)
			c.RootNewestMount = n
			return ok
		case "sandbox":
			return sc.boolean(&c.Sandbox)
		case "sandboxId":
			return sc.str(&c.SandboxID, sh.internBytes)
		case "peerInContainer":
			return sc.boolean(&c.PeerInContainer)
		}
		return false
	})
}

// labels decodes a labels object into the shared map of equal labels,
// building a map only for labels not seen before in this replay.
func (sc *scanner) labels(out *map[string]string, sh *sharing) bool {
	pairs := sh.pairs[:0]
	ok := sc.object(func(key []byte) bool {
		var v []byte
		if !sc.rawStr(&v) {
			return false
		}
		pairs = append(pairs, [2][]byte{key, v})
		return true
	})
	sh.pairs = pairs
	if !ok {
		return false
	}
	if len(pairs) == 0 {
		*out = map[string]string{}
		return true
	}
	// Sorted by key, as the general path's canonical encoding; a repeated
	// key keeps its last value, as encoding/json does.
	slices.SortStableFunc(pairs, func(a, b [2][]byte) int { return compareBytes(a[0], b[0]) })
	key := sh.key[:0]
	for i, p := range pairs {
		if i+1 < len(pairs) && string(pairs[i+1][0]) == string(p[0]) {
			continue
		}
		key = append(append(append(append(key, p[0]...), 0), p[1]...), 0)
	}
	sh.key = key
	if shared, ok := sh.labels[string(key)]; ok {
		*out = shared
		return true
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[sh.internBytes(p[0])] = sh.internBytes(p[1])
	}
	sh.labels[string(key)] = m
	*out = m
	return true
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// internBytes is intern for a string still in bytes: a string seen before
// costs no allocation.
func (sh *sharing) internBytes(b []byte) string {
	if s, ok := sh.strings[string(b)]; ok {
		return s
	}
	s := string(b)
	sh.strings[s] = s
	return s
}

func copyBytes(b []byte) string { return string(b) }

// scanner reads the JSON that encoding/json writes for an entry.
type scanner struct {
	b []byte
	i int
}

func (sc *scanner) ws() {
	for sc.i < len(sc.b) && (sc.b[sc.i] == ' ' || sc.b[sc.i] == '\t' || sc.b[sc.i] == '\r' || sc.b[sc.i] == '\n') {
		sc.i++
	}
}

// lit consumes c after white space, if it is next.
func (sc *scanner) lit(c byte) bool {
	sc.ws()
	if sc.i < len(sc.b) && sc.b[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// object reads an object, calling field with each key positioned at its
// value; field reads the value or returns false.
func (sc *scanner) object(field func(key []byte) bool) bool {
	if !sc.lit('{') {
		return false
	}
	if sc.lit('}') {
		return true
	}
	for {
		var key []byte
		if !sc.rawStr(&key) || !sc.lit(':') || !field(key) {
			return false
		}
		if !sc.lit(',') {
			return sc.lit('}')
		}
	}
}

// rawStr reads a string without escapes, in valid UTF-8.
func (sc *scanner) rawStr(out *[]byte) bool {
	if !sc.lit('"') {
		return false
	}
	start, ascii := sc.i, true
	for ; sc.i < len(sc.b); sc.i++ {
		switch c := sc.b[sc.i]; {
		case c == '"':
			s := sc.b[start:sc.i]
			sc.i++
			if !ascii && !utf8.Valid(s) {
				return false
			}
			*out = s
			return true
		case c == '\\' || c < 0x20:
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return false
}

func (sc *scanner) str(out *string, conv func([]byte) string) bool {
	var b []byte
	if !sc.rawStr(&b) {
		return false
	}
	*out = conv(b)
	return true
}

func (sc *scanner) strings(out *[]string, sh *sharing) bool {
	if !sc.lit('[') {
		return false
	}
	*out = []string{}
	if sc.lit(']') {
		return true
	}
	for {
		var s string
		if !sc.str(&s, sh.internBytes) {
			return false
		}
		*out = append(*out, s)
		if !sc.lit(',') {
			return sc.lit(']')
		}
	}
}

// uint reads a plain decimal integer that fits in bits.
func (sc *scanner) uint(bits int) (uint64, bool) {
	sc.ws()
	start := sc.i
	var n uint64
	limit := ^uint64(0) >> (64 - bits)
	for ; sc.i < len(sc.b) && sc.b[sc.i] >= '0' && sc.b[sc.i] <= '9'; sc.i++ {
		d := uint64(sc.b[sc.i] - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	digits := sc.i - start
	// JSON has no leading zeros; a fraction or exponent is no integer.
	if digits == 0 || (digits > 1 && sc.b[start] == '0') {
		return 0, false
	}
	if sc.i < len(sc.b) && (sc.b[sc.i] == '.' || sc.b[sc.i] == 'e' || sc.b[sc.i] == 'E') {
		return 0, false
	}
	return n, true
}

func (sc *scanner) boolean(out *bool) bool {
	sc.ws()
	for _, lit := range []string{"true", "false"} {
		if len(sc.b)-sc.i >= len(lit) && string(sc.b[sc.i:sc.i+len(lit)]) == lit {
			sc.i += len(lit)
			*out = lit == "true"
			return true
		}
	}
	return false
}
