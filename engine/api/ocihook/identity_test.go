package ocihook

import (
	"maps"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func TestIdentity(t *testing.T) {
	crio := map[string]string{
		CRIONamespace:     "shop",
		CRIOPodName:       "web-1",
		CRIOPodUID:        "uid-1",
		CRIOContainerName: "nginx",
		CRIOLabels:        `{"app":"web","tier":"front"}`,
		CRIOImageName:     "nginx:1.27",
	}
	containerd := map[string]string{
		CRINamespace:     "shop",
		CRIPodName:       "web-2",
		CRIPodUID:        "uid-2",
		CRIContainerName: "app",
		CRIImageName:     "app:2",
	}
	tests := []struct {
		name string
		sets []map[string]string
		want api.Container
	}{
		{
			name: "cri-o",
			sets: []map[string]string{crio},
			want: api.Container{ID: "c1", Namespace: "shop", Pod: "web-1", PodUID: "uid-1", Name: "nginx", Image: "nginx:1.27", Labels: map[string]string{"app": "web", "tier": "front"}, Source: Source},
		},
		{
			name: "containerd cri",
			sets: []map[string]string{containerd},
			want: api.Container{ID: "c1", Namespace: "shop", Pod: "web-2", PodUID: "uid-2", Name: "app", Image: "app:2", Source: Source},
		},
		{
			name: "no annotations",
			sets: []map[string]string{nil, {}},
			want: api.Container{ID: "c1", Name: "c1", Source: Source},
		},
		{
			name: "state before config.json",
			sets: []map[string]string{{CRIONamespace: "from-state"}, {CRIONamespace: "from-config", CRIOPodName: "p"}},
			want: api.Container{ID: "c1", Namespace: "from-state", Pod: "p", Name: "c1", Source: Source},
		},
		{
			name: "empty value falls through",
			sets: []map[string]string{{CRIONamespace: ""}, {CRINamespace: "ns"}},
			want: api.Container{ID: "c1", Namespace: "ns", Name: "c1", Source: Source},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Identity("c1", tt.sets...)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.Namespace != tt.want.Namespace || got.Pod != tt.want.Pod ||
				got.PodUID != tt.want.PodUID || got.Name != tt.want.Name || got.Image != tt.want.Image ||
				got.Source != tt.want.Source || !maps.Equal(got.Labels, tt.want.Labels) {
				t.Fatalf("Identity = %+v\nwant       %+v", got, tt.want)
			}
		})
	}
}

func TestIdentityBadLabels(t *testing.T) {
	for _, raw := range []string{`{"app":`, `["app"]`, `{"app":1}`, `{"":"x"}`} {
		c, err := Identity("c1", map[string]string{CRIONamespace: "ns", CRIOLabels: raw})
		if err == nil || !strings.Contains(err.Error(), CRIOLabels) {
			t.Errorf("labels %s: error = %v, want one naming the annotation", raw, err)
		}
		// The namespace is still known, so the fail mode can use it.
		if c.Namespace != "ns" {
			t.Errorf("labels %s: namespace = %q, want ns", raw, c.Namespace)
		}
	}
	if labels, err := ParseLabels(`{}`); err != nil || labels != nil {
		t.Errorf("ParseLabels({}) = %v, %v", labels, err)
	}
}

// At createRuntime the state's pid is the container's process; at
// createContainer it is the init's pid inside the container and the hook
// itself is the witness.
func TestRegistrationByStage(t *testing.T) {
	st := &specs.State{ID: "c1", Pid: 4242, Bundle: "/b", Annotations: map[string]string{CRIONamespace: "shop"}}
	cfg := &BundleConfig{}
	cfg.Root = &struct {
		Path string `json:"path"`
	}{Path: "rootfs"}
	cfg.Process = &struct {
		Args []string `json:"args,omitempty"`
	}{Args: []string{"/bin/sh"}}
	for _, tc := range []struct {
		stage    Stage
		pid      int
		peerInCt bool
	}{{StageCreateRuntime, 4242, false}, {StageCreateContainer, 0, true}} {
		c, err := Registration(tc.stage, st, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if c.Pid != tc.pid || c.PeerInContainer != tc.peerInCt || c.Rootfs != "/b/rootfs" || c.Namespace != "shop" || len(c.Entrypoint) != 1 || c.Source != Source {
			t.Errorf("%s: registration %+v", tc.stage, c)
		}
	}
}
