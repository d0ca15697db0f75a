package hook_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestRedteamHostileBundleRefusedByEngine forwards runs whose bundle or
// state is hostile to a real engine (the fast path: the engine reads
// config.json itself). Each must be refused before the hook's deadline with
// an error naming what was wrong — a config.json FIFO once blocked the
// engine's open for good, then the hook's own, so the refusal only said the
// deadline passed — and the engine must still register a good container
// afterwards.
func TestRedteamHostileBundleRefusedByEngine(t *testing.T) {
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	pid := sleeperInCgroup(t)
	ann := lockedAnnotations("redreg-bundle")

	withConfig := func(make func(path string) error) string {
		dir := harness.OCIBundle(t, ann, "")
		p := filepath.Join(dir, "config.json")
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := make(p); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	fifo := withConfig(func(p string) error { return syscall.Mkfifo(p, 0o600) })
	dir := withConfig(func(p string) error { return os.Mkdir(p, 0o700) })
	huge := withConfig(func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Truncate(17 << 20) // sparse: read as 17 MiB of zeros
	})

	tests := []struct {
		name   string
		state  string
		errHas []string
	}{
		{"config.json is a FIFO", harness.OCIState("redreg-fifo", "creating", pid, fifo, ann), []string{"config.json", "not a regular file"}},
		{"config.json is a directory", harness.OCIState("redreg-dir", "creating", pid, dir, ann), []string{"config.json", "not a regular file"}},
		{"config.json is huge", harness.OCIState("redreg-huge", "creating", pid, huge, ann), []string{"config.json", "larger than"}},
		{"state is a JSON string", `"creating"`, []string{"malformed OCI state JSON"}},
		{"state is null", `null`, []string{"container id is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			got := runHook(t, bin, strings.NewReader(tt.state), "--stage", "createRuntime", "--socket", e.Socket,
				"--fail-mode", "closed", "--timeout", "3s", "--log", logPath)
			if got.exitCode != 1 {
				t.Fatalf("exit %d, want 1 (fail closed); stderr %q", got.exitCode, got.stderr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr %q does not name %q", got.stderr, s)
				}
			}
			if strings.Contains(got.stderr, "deadline") {
				t.Errorf("refused only by the deadline, not for what was wrong: %q", got.stderr)
			}
		})
	}

	// The engine still takes a good run at once.
	good := harness.OCIBundle(t, ann, "")
	logPath := filepath.Join(t.TempDir(), "hook.log")
	got := runHook(t, bin, strings.NewReader(harness.OCIState("redreg-good", "creating", pid, good, ann)),
		"--stage", "createRuntime", "--socket", e.Socket, "--fail-mode", "closed", "--timeout", "3s", "--log", logPath)
	if got.exitCode != 0 {
		t.Fatalf("good run after the hostile ones: exit %d, stderr %q", got.exitCode, got.stderr)
	}
	decision(t, logPath, "redreg-good", "registered")
}
