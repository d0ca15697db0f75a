package daemon

import (
	"fmt"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// syncModesLocked puts the current modes of c's policies on its ruleset in
// the kernel, once per ruleset and reconcile (synced): a ruleset kept
// across a reload (same key) may have policies whose spec.mode changed, and
// a ruleset adopted from the pins may have been written before a change.
// Only the rules' modes change; the rules and the cgroup entries stay.
func (e *Engine) syncModesLocked(c api.Container, rulesetID uint32, synced map[uint32]bool) error {
	if synced[rulesetID] {
		return nil
	}
	rs, err := e.policies.Compile(rulesetID, e.policies.Select(identity(c)))
	if err != nil {
		return fmt.Errorf("compile modes of ruleset %d: %w", rulesetID, err)
	}
	if err := e.enforcer.SetAuditModes(rs); err != nil {
		return err
	}
	synced[rulesetID] = true
	return nil
}

// verdictOf is the verdict and mode of a kernel decision: what the kernel
// did, whatever the policy says now.
func verdictOf(ev bpf.Event) (verdict, mode string) {
	if ev.Audited {
		return api.VerdictWouldDeny, api.ModeAudit
	}
	return api.VerdictDeny, api.ModeEnforce
}
