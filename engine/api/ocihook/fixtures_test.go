package ocihook

import (
	"reflect"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// The fixtures (hook/testdata) are the annotations runtimes put on a pod's
// sandbox and on one of its application containers: CRI-O's as its sources
// set them (server/sandbox_run_linux.go, internal/factory/container),
// containerd's captured from containerd 2.4's CRI (internal/cri/annotations;
// HOLDFAST_UPDATE_FIXTURES=1 go test -run TestHookPodLabelsFromCRI ./test/nri
// refreshes them).
func TestIdentityOfRuntimeFixtures(t *testing.T) {
	tests := []struct {
		fixture   string
		sandbox   bool
		sandboxID string // of an application container
		namespace string
		pod       string
		name      string
		// labels the registration carries: a CRI-O sandbox's are the pod's;
		// an application container carries none, the engine gives it the pod's.
		labels map[string]string
	}{
		{
			fixture: "crio-sandbox.json", sandbox: true, namespace: "shop", pod: "web-7f9c6b5d4-x2kqp", name: "POD",
			labels: map[string]string{"app": "web", "tier": "front", "pod-template-hash": "7f9c6b5d4"},
		},
		{
			fixture: "crio-container.json", sandboxID: "5b0c8f7e2d1a4c3b9e6f8a7d5c4b3a2918f7e6d5c4b3a29180f1e2d3c4b5a697",
			namespace: "shop", pod: "web-7f9c6b5d4-x2kqp", name: "main",
		},
		{
			fixture: "containerd-sandbox.json", sandbox: true, namespace: "shop", pod: "web-fixture",
		},
		{
			fixture: "containerd-container.json", sandboxID: "containerd-fixture-sandbox", namespace: "shop", pod: "web-fixture", name: "main",
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			a := harness.RuntimeAnnotations(t, tt.fixture)
			got, err := Identity("c1", a)
			if err != nil {
				t.Fatal(err)
			}
			if got.Sandbox != tt.sandbox || got.SandboxID != tt.sandboxID || got.Namespace != tt.namespace || got.Pod != tt.pod {
				t.Errorf("Identity = sandbox %v, sandboxId %q, %s/%s; want sandbox %v, sandboxId %q, %s/%s",
					got.Sandbox, got.SandboxID, got.Namespace, got.Pod, tt.sandbox, tt.sandboxID, tt.namespace, tt.pod)
			}
			if tt.name != "" && got.Name != tt.name {
				t.Errorf("container name %q, want %q", got.Name, tt.name)
			}
			for k, v := range tt.labels {
				if got.Labels[k] != v {
					t.Errorf("label %s=%q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
				}
			}
			if !tt.sandbox && got.Labels != nil {
				t.Errorf("application container carries labels %v; its pod's come from the sandbox", got.Labels)
			}
		})
	}
}

func TestIdentityRefusesContainerWithoutSandbox(t *testing.T) {
	a := harness.RuntimeAnnotations(t, "crio-container.json")
	delete(a, CRIOSandboxID)
	if _, err := Identity("c1", a); err == nil {
		t.Fatal("an application container without a sandbox id was accepted")
	}
	if _, err := Identity("c1", map[string]string{CRIContainerType: "podsandbox"}); err == nil {
		t.Fatal("an unknown container type was accepted")
	}
}

// TestIdentityReadsOnlyIdentityKeys: the decoders keep only the
// annotations isIdentityKey names, so Identity must come out the same
// from those alone; a key Identity starts to read that the fixtures carry
// and isIdentityKey does not name fails here.
func TestIdentityReadsOnlyIdentityKeys(t *testing.T) {
	dropped := 0
	for _, fixture := range []string{"crio-sandbox.json", "crio-container.json", "containerd-sandbox.json", "containerd-container.json"} {
		all := harness.RuntimeAnnotations(t, fixture)
		kept := map[string]string{}
		for k, v := range all {
			if isIdentityKey([]byte(k)) {
				kept[k] = v
			}
		}
		dropped += len(all) - len(kept)
		want, wantErr := Identity("c1", all)
		got, err := Identity("c1", kept)
		if !reflect.DeepEqual(got, want) || (err == nil) != (wantErr == nil) {
			t.Errorf("%s: identity from its identity annotations %+v (%v), from all %+v (%v)", fixture, got, err, want, wantErr)
		}
	}
	if dropped == 0 {
		t.Fatal("every fixture annotation is an identity's: the test checks nothing")
	}
}
