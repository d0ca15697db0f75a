package engine_test

import (
	"context"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkRegisterUnregister measures one registrar round trip pair
// against a live engine: register a container (policy selection, registry
// write, map update) and unregister it.
//
//	go test -run '^$' -bench RegisterUnregister -benchtime 2000x ./test/engine/
func BenchmarkRegisterUnregister(b *testing.B) {
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", "/nonexistent/denied", "127.0.0.1:9")}})
	cg := harness.NewCgroup(b)
	client := e.Client()
	ctx := context.Background()
	ctr := api.Container{ID: "bench", CgroupID: cg.ID, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := client.Register(ctx, ctr)
		if err != nil {
			b.Fatal(err)
		}
		if len(got.Policies) != 1 {
			b.Fatalf("policies %v", got.Policies)
		}
		if err := client.Unregister(ctx, ctr.ID); err != nil {
			b.Fatal(err)
		}
	}
}
