package nriplugin

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkStartStop measures the plugin's own StartContainer handling
// (cgroup lookup and registration with a real engine) and StopContainer,
// without containerd around it:
//
//	go test -run '^$' -bench StartStop -benchtime 2000x ./nri-plugin/
func BenchmarkStartStop(b *testing.B) {
	m := harness.CgroupMount(b)
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"shop.yaml": harness.Policy("shop", "namespaces: [shop]", "exec: {deny: [/nonexistent/denied]}")}})
	cg := harness.NewCgroup(b)
	pid := cg.Start(b, "sleep", "300").Process.Pid
	p := &Plugin{
		Engine:         &api.Client{Socket: e.Socket},
		Settings:       registrar.Settings{FailMode: registrar.FailClosed},
		Cgroups:        m,
		Log:            quietLog(),
		RequestTimeout: 2 * time.Second,
	}
	ctx := context.Background()
	pod, ctr := testPod(), testContainer("bench", pid)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.StartContainer(ctx, pod, ctr); err != nil {
			b.Fatal(err)
		}
		if _, err := p.StopContainer(ctx, pod, ctr); err != nil {
			b.Fatal(err)
		}
	}
}
