package engine_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

const tokenFilter = `apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: tokens}
spec:
  envKeys: ['*_TOKEN']
`

// refusedWithEnv runs sh → the dial helper in a registered cgroup with
// SECRET_TOKEN=hunter2 OTHER=x and returns the connect-refused event.
func refusedWithEnv(t *testing.T, args ...string) (map[string]any, *harness.Engine) {
	t.Helper()
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Args: args, Policies: map[string]string{
		"shop.yaml":   denyIn("shop-lock", "shop", binary, addr),
		"tokens.yaml": tokenFilter,
	}})
	cg := harness.NewCgroup(t)
	registerIn(t, e, "shop-1", cg, "shop", "web-0", "main")
	cmd := exec.Command("/bin/sh", "-c", os.Args[0]+"; true")
	// A small environment: the kernel keeps its first 1023 bytes.
	cmd.Env = []string{"SECRET_TOKEN=hunter2", "OTHER=x", envDial + "=tcp " + addr}
	if r := cg.RunCmd(t, cmd); !strings.Contains(r.Stdout, "refused:") {
		t.Fatalf("denied connect: %v", r)
	}
	return e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "connect-refused" }), e
}

func envOf(p any) []string {
	m, _ := p.(map[string]any)
	raw, _ := m["env"].([]any)
	var env []string
	for _, v := range raw {
		env = append(env, fmt.Sprint(v))
	}
	return env
}

// With --capture-env, a refused connect's event carries the process's and
// its parent's environments, values of *_TOKEN masked by the filter that
// names itself in redactedBy; the secret is nowhere in the events file.
func TestEnvCaptureRedacted(t *testing.T) {
	ev, e := refusedWithEnv(t, "--capture-env")
	if st := status(t, e); st.EnvCapture != "on" {
		t.Errorf("status environment capture %q, want on", st.EnvCapture)
	}
	ancestors, _ := ev["ancestors"].([]any)
	if len(ancestors) == 0 {
		t.Fatalf("event has no ancestors: %v", ev)
	}
	for who, p := range map[string]any{"process": ev["process"], "parent sh": ancestors[0]} {
		env := envOf(p)
		if !slices.Contains(env, "OTHER=x") || !slices.Contains(env, "SECRET_TOKEN=*****") {
			t.Errorf("%s env %q, want OTHER=x and SECRET_TOKEN=*****", who, env)
		}
	}
	if fmt.Sprint(ev["redactedBy"]) != "[tokens]" {
		t.Errorf("redactedBy = %v, want [tokens]", ev["redactedBy"])
	}
	file, err := os.ReadFile(e.EventsFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), "hunter2") {
		t.Errorf("secret in the events file: %s", file)
	}
}

// Without --capture-env (the default) the same event has no environment
// and the kernel's switch is off.
func TestEnvNotCapturedByDefault(t *testing.T) {
	ev, e := refusedWithEnv(t)
	if st := status(t, e); st.EnvCapture != "off" {
		t.Errorf("status environment capture %q, want off", st.EnvCapture)
	}
	if env := envOf(ev["process"]); env != nil {
		t.Errorf("process env %q without --capture-env", env)
	}
	for _, a := range ev["ancestors"].([]any) {
		if env := envOf(a); env != nil {
			t.Errorf("ancestor env %q without --capture-env", env)
		}
	}
	if ev["redactedBy"] != nil {
		t.Errorf("redactedBy = %v with nothing to redact", ev["redactedBy"])
	}
}
