// Package require decides, for privileged tests, whether a missing feature
// is a reason to skip. In CI, HOLDFAST_REQUIRE_PRIVILEGED=1 turns a skip of a
// feature the machine is expected to have into a failure.
package require

import (
	"os"
	"testing"
)

// EnvRequirePrivileged names the variable CI sets.
const EnvRequirePrivileged = "HOLDFAST_REQUIRE_PRIVILEGED"

// Strict reports whether skips of expected features must fail.
func Strict() bool { return os.Getenv(EnvRequirePrivileged) == "1" }

// Privileged skips t when err says a feature is missing, or fails it in
// strict mode. Use it for features this kind of machine has (root, BPF,
// cgroup v2, runc, podman, containerd).
func Privileged(t testing.TB, feature string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Strict() {
		t.Fatalf("%s is required (%s=1) but unavailable: %v", feature, EnvRequirePrivileged, err)
	}
	t.Skipf("%s unavailable: %v", feature, err)
}

// Root skips or fails t unless it runs as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Privileged(t, "root", errNotRoot)
	}
}

// Unsupported skips t for a feature a probe found missing on this kernel.
// It never fails, even in strict mode: use it only for features this kind of
// machine is known not to have (for example BPF LSM programs), with the
// probe's reason.
func Unsupported(t testing.TB, feature string, reason error) {
	t.Helper()
	t.Skipf("%s not supported here (probe: %v)", feature, reason)
}

type notRootError struct{}

func (notRootError) Error() string { return "test is not running as root" }

var errNotRoot = notRootError{}
