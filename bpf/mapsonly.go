package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// ErrNotInstalled means no complete pinned program set exists under a
// layout: rules written to its maps would not be enforced by anything.
var ErrNotInstalled = errors.New("no pinned holdfast programs")

// OpenMaps opens the pinned maps of this ABI under layout to write rules
// while no engine runs (a registrar registering a container itself). It
// loads and attaches no program and repairs nothing: it refuses unless the
// links of a complete set are pinned, since maps that no program reads hold
// nobody. The enforcer it returns reports no controls.
func OpenMaps(layout Layout) (*Enforcer, error) {
	if err := layout.validate(); err != nil {
		return nil, fmt.Errorf("open pinned maps: %w", err)
	}
	if err := pinnedLinksComplete(layout); err != nil {
		return nil, fmt.Errorf("open pinned maps under %s: %w", layout.ABIDir(), err)
	}
	spec, err := loadHoldfast()
	if err != nil {
		return nil, fmt.Errorf("open pinned maps: %w", err)
	}
	maps, err := loadPinnedMaps(layout, spec)
	if err != nil {
		for _, m := range maps {
			m.Close()
		}
		return nil, fmt.Errorf("open pinned maps under %s: %w", layout.ABIDir(), err)
	}
	e := &Enforcer{
		layout: layout,
		log:    slog.New(slog.DiscardHandler),
		maps:   mapsByName(maps),
		inner4: spec.Maps[holdfastMapNet4Rules].InnerMap.Copy(),
		inner6: spec.Maps[holdfastMapNet6Rules].InnerMap.Copy(),
		progs:  map[string]*ebpf.Program{},
		links:  map[string]link.Link{},
	}
	if err := e.readHashKey(); err != nil {
		e.closeAll()
		return nil, fmt.Errorf("open pinned maps: %w", err)
	}
	rulesets, err := e.Rulesets()
	if err != nil {
		e.closeAll()
		return nil, fmt.Errorf("open pinned maps: %w", err)
	}
	e.notePartial(rulesets)
	return e, nil
}

// pinnedLinksComplete checks that every link of one exec mode's set, and of
// the programs every mode has, is pinned. Open checks more (each link runs
// its pinned program, on the right cgroup); this is the cheap check for a
// writer that attaches nothing.
func pinnedLinksComplete(layout Layout) error {
	mode := ModeKill
	if _, err := os.Stat(layout.Pin(KindLink, progExecLSM)); err == nil {
		mode = ModeLSM
	}
	var missing []string
	for _, name := range append(slices.Clone(modePrograms[mode]), alwaysPrograms()...) {
		if _, err := os.Stat(layout.Pin(KindLink, name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: links %v not pinned (the engine installs them)", ErrNotInstalled, missing)
	}
	return nil
}
