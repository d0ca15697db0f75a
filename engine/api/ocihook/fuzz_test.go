package ocihook

import (
	"path"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
)

// FuzzParseInput feeds arbitrary state, config.json and labels through the
// parsing a hook run does. It must never panic, and whatever it accepts
// must satisfy the invariants later steps rely on.
func FuzzParseInput(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b"}`),
		[]byte(`{"annotations":{"io.kubernetes.pod.namespace":"ns"},"linux":{"cgroupsPath":"/a/b"}}`),
		`{"app":"web"}`, "system.slice:crio:abc")
	f.Add([]byte(`{"id":"x","annotations":{"io.kubernetes.cri-o.Labels":"{\"a\":\"b\"}"}}`), []byte(`{}`), `null`, "/..")
	f.Add([]byte(``), []byte(`{"linux":null}`), `{`, "-.slice::x.slice")
	f.Add([]byte(`{"id":"\u0000"}`), []byte(`[]`), `{"":"x"}`, "a:b:c")
	f.Fuzz(func(t *testing.T, state, config []byte, labels, cgroupsPath string) {
		st, err := ParseState(state)
		if err == nil {
			if st.ID == "" || len(st.ID) > maxIDLen || st.Pid < 0 {
				t.Fatalf("accepted state with id %q pid %d", st.ID, st.Pid)
			}
			_ = CheckCreateState(st, StageCreateRuntime)
		}
		cfg, err := ParseBundleConfig(config)
		if err == nil {
			_ = cfg.CgroupsPath()
			if st != nil {
				if c, err := Identity(st.ID, st.Annotations, cfg.Annotations); err == nil && c.ID != st.ID {
					t.Fatalf("identity id %q, want %q", c.ID, st.ID)
				}
			}
		}
		if c, err := Identity("c1", map[string]string{CRIOLabels: labels}); err == nil {
			for k := range c.Labels {
				if strings.TrimSpace(k) == "" {
					t.Fatalf("accepted empty label key from %q", labels)
				}
			}
		}
		p, err := cgroup.ParseCgroupsPath(cgroupsPath)
		if err == nil {
			if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
				t.Fatalf("ParseCgroupsPath(%q) = %q: not a clean absolute path", cgroupsPath, p)
			}
		}
	})
}
