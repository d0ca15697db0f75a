package registrar

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	parse := func(args ...string) (Settings, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return f.Settings()
	}
	p, err := parse()
	if err != nil || p.FailMode != FailOpen || len(p.FailOpenNamespaces) != 0 || p.EngineNamespace != DefaultEngineNamespace {
		t.Errorf("defaults = %+v, %v", p, err)
	}
	p, err = parse("--fail-mode", "closed", "--fail-open-namespaces", " kube-system, ,shop ", "--engine-namespace", "sec")
	if err != nil || p.FailMode != FailClosed || !slices.Equal(p.FailOpenNamespaces, []string{"kube-system", "shop"}) || p.EngineNamespace != "sec" {
		t.Errorf("set = %+v, %v", p, err)
	}
	if _, err := parse("--fail-mode", "ajar"); err == nil || !strings.Contains(err.Error(), "--fail-mode") {
		t.Errorf("bad mode: error = %v, want one naming --fail-mode", err)
	}
}
