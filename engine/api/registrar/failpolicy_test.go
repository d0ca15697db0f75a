package registrar

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    FailMode
		wantErr string
	}{
		{in: "open", want: FailOpen},
		{in: "closed", want: FailClosed},
		{in: "Open", wantErr: `unknown fail mode "Open"`},
		{in: "Closed", wantErr: `unknown fail mode "Closed"`},
		{in: "", wantErr: `unknown fail mode ""`},
		{in: "ajar", wantErr: "want open or closed"},
	}
	for _, tt := range tests {
		got, err := ParseFailMode(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseFailMode(%q) = %q, %v, want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFailMode(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  Settings
		wantErr string
	}{
		{name: "closed with lists", policy: Settings{FailMode: FailClosed, FailOpenNamespaces: []string{"kube-system"}, EngineNamespace: DefaultEngineNamespace}},
		{name: "zero is the default", policy: Settings{}},
		{name: "unknown mode", policy: Settings{FailMode: "maybe"}, wantErr: `unknown fail mode "maybe"`},
		{name: "empty namespace", policy: Settings{FailMode: FailOpen, FailOpenNamespaces: []string{"a", ""}}, wantErr: "empty name"},
	}
	for _, tt := range tests {
		err := tt.policy.Validate()
		if tt.wantErr == "" && err != nil {
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestFailsOpen(t *testing.T) {
	closed := Settings{FailMode: FailClosed, FailOpenNamespaces: []string{"kube-system"}, EngineNamespace: DefaultEngineNamespace}
	open := Settings{FailMode: FailOpen, EngineNamespace: DefaultEngineNamespace}
	tests := []struct {
		policy    Settings
		namespace string
		want      bool
		why       string
	}{
		{closed, "default", false, "fail mode is closed"},
		{closed, "", false, "fail mode is closed"},
		{closed, "kube-system", true, "namespace kube-system is in the fail-open list"},
		{closed, DefaultEngineNamespace, true, "namespace holdfast-system is the engine's own"},
		{open, "default", true, "fail mode is open"},
		{open, DefaultEngineNamespace, true, "engine's own"},
		// The zero mode is the default, open.
		{Settings{}, "default", true, "fail mode is open"},
		// No engine namespace set: an unnamespaced container is not the engine's.
		{Settings{FailMode: FailClosed}, "", false, "fail mode is closed"},
		{Settings{FailMode: FailClosed}, DefaultEngineNamespace, false, "fail mode is closed"},
		// A mode Validate would reject refuses rather than guesses.
		{Settings{FailMode: "ajar"}, "default", false, `fail mode "ajar" is unknown`},
	}
	for _, tt := range tests {
		got, why := tt.policy.FailsOpen(tt.namespace)
		if got != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("%+v namespace %q: FailsOpen = %v (%s), want %v (%s)", tt.policy, tt.namespace, got, why, tt.want, tt.why)
		}
	}
}

func TestDecideCannotEnforce(t *testing.T) {
	cannot := fmt.Errorf("register x: %w: map full", api.ErrCannotEnforce)
	unreachable := errors.New("connect to engine: no such file")
	p := Settings{FailMode: FailOpen, FailOpenNamespaces: []string{"kube-system"}, EngineNamespace: DefaultEngineNamespace}
	for _, tt := range []struct {
		ns   string
		err  error
		open bool
	}{
		{"shop", cannot, false},
		{"", cannot, false},
		{"kube-system", cannot, true},
		{DefaultEngineNamespace, cannot, true},
		{"shop", unreachable, true},
	} {
		if open, why := p.Decide(tt.ns, errors.Is(tt.err, api.ErrCannotEnforce)); open != tt.open || why == "" {
			t.Errorf("Decide(%q, %v) = %v (%s), want %v", tt.ns, tt.err, open, why, tt.open)
		}
	}
	closed := Settings{FailMode: FailClosed}
	if open, _ := closed.Decide("shop", errors.Is(unreachable, api.ErrCannotEnforce)); open {
		t.Error("closed mode let an unreachable engine's container start")
	}
}

func TestSettingsDefaults(t *testing.T) {
	if got := (Settings{}).WithDefaults(); got.FailMode != FailOpen || got.EngineNamespace != DefaultEngineNamespace || got.FailOpenNamespaces != nil {
		t.Errorf("zero WithDefaults = %+v", got)
	}
	set := Settings{FailMode: FailClosed, FailOpenNamespaces: []string{"a"}, EngineNamespace: "sec"}
	if got := set.WithDefaults(); got.FailMode != FailClosed || got.EngineNamespace != "sec" || len(got.FailOpenNamespaces) != 1 {
		t.Errorf("WithDefaults overrode set fields: %+v", got)
	}
}

// Config files written before Settings existed must keep loading.
func TestSettingsJSONKeys(t *testing.T) {
	var s Settings
	if err := json.Unmarshal([]byte(`{"failMode":"closed","failOpenNamespaces":["kube-system"],"engineNamespace":"sec"}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.FailMode != FailClosed || !slices.Equal(s.FailOpenNamespaces, []string{"kube-system"}) || s.EngineNamespace != "sec" {
		t.Errorf("decoded %+v", s)
	}
	if out, err := json.Marshal(Settings{}); err != nil || string(out) != "{}" {
		t.Errorf("zero Settings encodes as %s, %v; want {}", out, err)
	}
}
