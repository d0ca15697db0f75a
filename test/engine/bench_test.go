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
	benchRegister(b, "/nonexistent/denied", false, func(got *api.Container) {
		if len(got.Policies) != 1 {
			b.Fatalf("policies %v", got.Policies)
		}
	})
}

// BenchmarkRegisterResolving is BenchmarkRegisterUnregister for a container
// with a live process: each registration also resolves the exec rule in the
// process's root and writes its file identity.
//
//	go test -run '^$' -bench RegisterResolving -benchtime 2000x ./test/engine/
func BenchmarkRegisterResolving(b *testing.B) {
	benchRegister(b, "/bin/id", true, func(got *api.Container) {
		if got.RootID == "" {
			b.Fatalf("registration resolved no root: %+v", got)
		}
	})
}

// benchRegister registers and unregisters one container per iteration
// against an engine denying binary, with a live process when withProcess,
// and checks each registration.
func benchRegister(b *testing.B, binary string, withProcess bool, check func(*api.Container)) {
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, "127.0.0.1:9")}})
	cg := harness.NewCgroup(b)
	ctr := api.Container{ID: "bench", CgroupID: cg.ID, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main"}
	if withProcess {
		ctr.Pid = cg.Start(b, "sleep", "600").Process.Pid
	}
	client := e.Client()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := client.Register(ctx, ctr)
		if err != nil {
			b.Fatal(err)
		}
		check(got)
		if err := client.Unregister(ctx, ctr.ID); err != nil {
			b.Fatal(err)
		}
	}
}
