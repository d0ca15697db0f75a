package engine_test

import (
	"context"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkRegisterResolving is BenchmarkRegisterUnregister for a container
// with a live process: each registration also resolves the exec rule in the
// process's root and writes its file identity.
//
//	go test -run '^$' -bench RegisterResolving -benchtime 2000x ./test/engine/
func BenchmarkRegisterResolving(b *testing.B) {
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", "/bin/id", "127.0.0.1:9")}})
	cg := harness.NewCgroup(b)
	proc := cg.Start(b, "sleep", "600")
	client := e.Client()
	ctx := context.Background()
	ctr := api.Container{ID: "bench", CgroupID: cg.ID, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main", Pid: proc.Process.Pid}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := client.Register(ctx, ctr)
		if err != nil {
			b.Fatal(err)
		}
		if got.RootID == "" {
			b.Fatalf("registration resolved no root: %+v", got)
		}
		if err := client.Unregister(ctx, ctr.ID); err != nil {
			b.Fatal(err)
		}
	}
}
