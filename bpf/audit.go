package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// Audit mode lives in the audit_rules map, keyed by ruleset and rule ID,
// apart from the rules: a decision by a rule with an entry there is recorded
// (an event whose Audited is set) and the operation goes ahead. Switching a
// policy's mode rewrites only these entries (SetAuditModes), so running
// containers switch at once, with no moment without their rules.

// Rule IDs of audit_rules entries for refusals no rule made
// (AUDIT_UNRESOLVED and AUDIT_NOT_ALLOWED in maps.h).
const (
	auditUnresolved uint32 = 0
	auditNotAllowed uint32 = 0xffffffff
)

// actionAudited is or'd into the action of an audited decision
// (ACTION_AUDITED).
const actionAudited uint32 = 1 << 8

// compareAudit orders enforcing rules before audit-mode ones: where the
// kernel takes the first match or keeps one of two equal rules, an
// enforcing rule decides.
func compareAudit(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// enforceCoveringSockets gives an audit-mode socket entry the rule of an
// enforcing entry that covers it (same family, its type or any, its
// protocol or any): sock_create takes the most specific entry, which must
// not let through what an enforcing rule denies.
func enforceCoveringSockets(entries []socketEntry) {
	covers := func(wide, k holdfastSocketKey) bool {
		return wide.Family == k.Family && (wide.Type == SocketAny || wide.Type == k.Type) &&
			(wide.Protocol == SocketAny || wide.Protocol == k.Protocol)
	}
	for i := range entries {
		if !entries[i].audit {
			continue
		}
		for _, e := range entries {
			if !e.audit && covers(e.key, entries[i].key) {
				entries[i].ruleID, entries[i].audit = e.ruleID, false
				break
			}
		}
	}
}

// auditEntries lists the audit_rules keys of a ruleset: the ID of each
// audit-mode rule, and the refusals without a rule when those are audited.
// An audit-mode rule that compiling dropped for an equal enforcing one has
// an entry no lookup reaches.
func auditEntries(rs Ruleset) []holdfastAuditKey {
	var ids []uint32
	ids = appendAudited(ids, rs.Exec, func(r ExecRule) (uint32, bool) { return r.RuleID, r.Audit })
	ids = appendAudited(ids, rs.Connect, func(r NetRule) (uint32, bool) { return r.RuleID, r.Audit })
	ids = appendAudited(ids, rs.Sockets, func(r SocketRule) (uint32, bool) { return r.RuleID, r.Audit })
	ids = appendAudited(ids, rs.Bind, func(r BindRule) (uint32, bool) { return r.RuleID, r.Audit })
	if rs.AuditNotAllowed {
		ids = append(ids, auditNotAllowed)
	}
	if rs.AuditUnresolved {
		ids = append(ids, auditUnresolved)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]holdfastAuditKey, len(ids))
	for i, r := range ids {
		out[i] = holdfastAuditKey{Ruleset: rs.ID, RuleId: r}
	}
	return out
}

// appendAudited appends the IDs of the audit-mode rules among rules.
func appendAudited[R any](ids []uint32, rules []R, mode func(R) (id uint32, audit bool)) []uint32 {
	for _, r := range rules {
		if id, audit := mode(r); audit {
			ids = append(ids, id)
		}
	}
	return ids
}

// writeAudit makes the audit_rules entries of ruleset id exactly keys:
// new entries first, then stale ones deleted, so each rule changes mode in
// one step and no other rule changes at all.
func (e *Enforcer) writeAudit(id uint32, keys []holdfastAuditKey) error {
	for _, k := range keys {
		if err := e.maps.AuditRules.Update(k, uint32(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write audit mode of rule %d to %s: %w", k.RuleId, holdfastMapAuditRules, e.fullError(holdfastMapAuditRules, err))
		}
	}
	stale, err := keysOf[holdfastAuditKey](e.maps.AuditRules, func(k holdfastAuditKey) bool {
		return k.Ruleset == id && !slices.Contains(keys, k)
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", holdfastMapAuditRules, err)
	}
	for _, k := range stale {
		if err := e.maps.AuditRules.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete audit mode of rule %d from %s: %w", k.(holdfastAuditKey).RuleId, holdfastMapAuditRules, err)
		}
	}
	return nil
}

// SetAuditModes applies the modes of rs's rules to the stored ruleset
// rs.ID in place: the rules, their IDs and the cgroups using the ruleset
// stay as they are. rs must compile to the stored content (only modes
// differ), else ErrRulesetConflict: a mode change that makes another rule
// win a match needs a new ruleset.
func (e *Enforcer) SetAuditModes(rs Ruleset) error {
	c, err := compileRuleset(rs, e.hashKey)
	if err != nil {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var cur holdfastRulesetInfo
	if err := e.maps.Rulesets.Lookup(rs.ID, &cur); errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, ErrRulesetNotLoaded)
	} else if err != nil {
		return fmt.Errorf("set audit modes of ruleset %d: look up rulesets: %w", rs.ID, err)
	}
	if cur.Digest != c.info.Digest {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, ErrRulesetConflict)
	}
	if err := e.writeAudit(rs.ID, c.audit); err != nil {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, err)
	}
	return nil
}

// AuditedRules returns the rule IDs in audit mode in ruleset id, with
// unresolved and notAllowed saying whether refusals without a rule are.
func (e *Enforcer) AuditedRules(id uint32) (rules []uint32, notAllowed, unresolved bool, err error) {
	err = forEachKey(e.maps.AuditRules, func(k holdfastAuditKey) {
		switch {
		case k.Ruleset != id:
		case k.RuleId == auditNotAllowed:
			notAllowed = true
		case k.RuleId == auditUnresolved:
			unresolved = true
		default:
			rules = append(rules, k.RuleId)
		}
	})
	if err != nil {
		return nil, false, false, fmt.Errorf("read %s: %w", holdfastMapAuditRules, err)
	}
	slices.Sort(rules)
	return rules, notAllowed, unresolved, nil
}
