package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// fakeHoldfast writes a shell script standing in for the holdfast binary.
func fakeHoldfast(t *testing.T, script string) string {
	return harness.Executable(t, BinaryName, "#!/bin/sh\n"+script+"\n")
}

func TestCommandProtocol(t *testing.T) {
	ctx := context.Background()
	t.Run("registered", func(t *testing.T) {
		// Echo the container back with a policy, and the arguments it got.
		bin := fakeHoldfast(t, `read -r c; echo "$@" > "$(dirname "$0")/args"; echo "$c" | sed 's/}$/,"policies":["p"]}/'`)
		got, err := Command{Binary: bin, StateDir: "/st", BPFDir: "/bpf"}.Register(ctx, api.Container{ID: "c1", Namespace: "ns"})
		if err != nil || got.ID != "c1" || got.Namespace != "ns" || len(got.Policies) != 1 {
			t.Fatalf("Register = %+v, %v", got, err)
		}
		args, _ := os.ReadFile(filepath.Join(filepath.Dir(bin), "args"))
		if !strings.HasPrefix(string(args), CommandRegister+" --state-dir /st --bpf-dir /bpf --timeout ") {
			t.Errorf("command line %q", args)
		}
	})
	for _, tt := range []struct {
		code int
		want error
	}{{ExitCannotEnforce, api.ErrCannotEnforce}, {ExitNotFound, api.ErrNotFound}} {
		t.Run(fmt.Sprintf("exit %d", tt.code), func(t *testing.T) {
			bin := fakeHoldfast(t, fmt.Sprintf(`echo "holdfast: map cgroup_rules is full" >&2; exit %d`, tt.code))
			err := Command{Binary: bin}.Unregister(ctx, "c1")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "map cgroup_rules is full") {
				t.Fatalf("Unregister = %v, want %v with the command's message", err, tt.want)
			}
		})
	}
	t.Run("other failure", func(t *testing.T) {
		bin := fakeHoldfast(t, `echo "holdfast: engine state dir: no such file" >&2; exit 1`)
		_, err := Command{Binary: bin}.Register(ctx, api.Container{ID: "c1"})
		if err == nil || errors.Is(err, api.ErrCannotEnforce) || !strings.Contains(err.Error(), "engine state dir") {
			t.Fatalf("Register = %v, want the command's message and no sentinel", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		bin := fakeHoldfast(t, `sleep 5`)
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Command{Binary: bin}.Register(ctx, api.Container{ID: "c1"})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Fatalf("Register = %v after %v, want the deadline at once", err, time.Since(start))
		}
	})
	t.Run("no binary", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := Command{}.Register(ctx, api.Container{ID: "c1"})
		if err == nil || !strings.Contains(err.Error(), "find the holdfast binary") {
			t.Fatalf("Register = %v, want it to say the binary is missing", err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	refused := fmt.Errorf("register container c1: %w register: %w", api.ErrRefused, api.ErrCannotEnforce)
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{refused, false},
		{fmt.Errorf("connect to engine: %w", os.ErrNotExist), true},
		{fmt.Errorf("read register response: %w", context.DeadlineExceeded), true},
	} {
		if got := Unreachable(tt.err); got != tt.want {
			t.Errorf("Unreachable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
