package daemon

import (
	"context"
	"testing"
)

// The capture switch is pinned: each engine sets it from its own flag, so
// an engine restarted without --capture-env turns off what an earlier one
// turned on, and status reports the switch as the maps hold it.
func TestEnvCaptureFollowsEachStart(t *testing.T) {
	u := newUnitEngine(t, nil, Options{Observe: ObserveOptions{CaptureEnv: true}})
	check := func(when string, want bool, text string) {
		t.Helper()
		if on, _ := u.fake.EnvCapture(); on != want {
			t.Errorf("%s: switch %v, want %v", when, on, want)
		}
		st, err := u.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.EnvCapture != text {
			t.Errorf("%s: status environment capture %q, want %q", when, st.EnvCapture, text)
		}
	}
	check("started with --capture-env", true, "on")
	u.opts.Observe.CaptureEnv = false
	u.restart(t)
	check("restarted without it", false, "off")
}
