package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/hook"
)

// TestRunOCIHookCommandLine: what the fast path hands over is parsed, and
// anything else is a usage error naming what is wrong.
func TestRunOCIHookCommandLine(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no --", []string{"--stage", "createRuntime"}, "want --"},
		{"bad elapsed", []string{"--elapsed-ns", "soon", "--", "--stage", "createRuntime"}, "--elapsed-ns"},
		{"negative elapsed", []string{"--elapsed-ns", "-5", "--", "--stage", "createRuntime"}, "--elapsed-ns"},
		{"the hook's own usage error", []string{"--elapsed-ns", "10", "--", "--stage", "prestart", "--config", "none"}, "unknown stage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := runOCIHook(tt.args, strings.NewReader(""), &stderr); code != hook.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("runOCIHook(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), hook.ExitUsage, tt.want)
			}
		})
	}
}
