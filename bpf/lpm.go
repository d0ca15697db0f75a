package bpf

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// maxPortRules is how many port rules one LPM value holds inline
// (MAX_PORT_RULES); chunkPortRules how many one overflow chunk holds.
const (
	maxPortRules   = len(holdfastPortRules{}.Rules)
	chunkPortRules = len(holdfastPortChunk{}.Rules)
)

type portRule struct {
	lo, hi uint16
	proto  uint8
	from   uint8 // ancestor classes (NetRule.From)
	ruleID uint32
	audit  bool // not stored in the value: audit_rules holds modes
}

// An lpmEntry is one stored prefix with every port rule that applies to
// addresses whose longest stored match it is.
type lpmEntry struct {
	prefix netip.Prefix
	rules  []portRule
}

// normalizePrefix masks p and turns v4-mapped v6 prefixes (::ffff:a.b.c.d/96+)
// into v4 ones, because the programs check v4-mapped destinations against
// the v4 rules.
func normalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q", p)
	}
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// flattenNet turns a ruleset's network rules into LPM entries. An LPM lookup
// returns only the longest matching prefix, so each entry carries its own
// rules followed by those of every shorter prefix containing it (most
// specific first, duplicates dropped). Any number of rules fits: past
// maxPortRules they go to overflow chunks (see packPortRules).
func flattenNet(rules []NetRule) (v4, v6 []lpmEntry, err error) {
	own := map[netip.Prefix][]portRule{}
	for i, r := range rules {
		p, err := normalizePrefix(r.Prefix)
		if err != nil {
			return nil, nil, fmt.Errorf("connect rule %d (rule id %d): %w", i, r.RuleID, err)
		}
		if r.PortLo > r.PortHi {
			return nil, nil, fmt.Errorf("connect rule %d (rule id %d): port range %d-%d is empty", i, r.RuleID, r.PortLo, r.PortHi)
		}
		if err := checkProto(r.Proto); err != nil {
			return nil, nil, fmt.Errorf("connect rule %d (rule id %d): %w", i, r.RuleID, err)
		}
		own[p] = append(own[p], portRule{lo: r.PortLo, hi: r.PortHi, proto: r.Proto, from: r.From, ruleID: r.RuleID, audit: r.Audit})
	}

	prefixes := slices.SortedFunc(maps.Keys(own), comparePrefixes)

	for _, p := range prefixes {
		// prefixes is sorted by address then length, but containment needs
		// a scan; rulesets have few prefixes.
		var containing []netip.Prefix
		for _, q := range prefixes {
			if q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				containing = append(containing, q)
			}
		}
		slices.SortFunc(containing, func(a, b netip.Prefix) int { return cmp.Compare(b.Bits(), a.Bits()) })
		var all []portRule
		for _, q := range containing {
			all = append(all, own[q]...)
		}
		// Enforcing rules first, whatever their prefix: the kernel takes
		// the first match, and an audit-mode rule must not hide one.
		slices.SortStableFunc(all, func(a, b portRule) int { return compareAudit(a.audit, b.audit) })
		var merged []portRule
		for _, r := range all {
			if !slices.ContainsFunc(merged, func(m portRule) bool { return m.lo == r.lo && m.hi == r.hi && m.proto == r.proto && m.from == r.from }) {
				merged = append(merged, r)
			}
		}
		entry := lpmEntry{prefix: p, rules: merged}
		if p.Addr().Is4() {
			v4 = append(v4, entry)
		} else {
			v6 = append(v6, entry)
		}
	}
	return v4, v6, nil
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// A chunkEntry is one overflow chunk of a ruleset's port rules.
type chunkEntry struct {
	key   holdfastChunkKey
	value holdfastPortChunk
}

// packPortRules stores rules as an LPM or bind_rules value: the first
// maxPortRules inline, the rest in chunks numbered from *seq on (unique
// within the ruleset), each linking to the next. The common case, few rules
// per prefix, stays one lookup.
func packPortRules(rules []portRule, ruleset uint32, seq *uint32) (holdfastPortRules, []chunkEntry) {
	var v holdfastPortRules
	inline := rules[:min(len(rules), maxPortRules)]
	v.N = uint32(len(inline))
	for i, r := range inline {
		v.Rules[i] = r.value()
	}
	var chunks []chunkEntry
	for rest := rules[len(inline):]; len(rest) > 0; {
		n := min(len(rest), chunkPortRules)
		c := chunkEntry{key: holdfastChunkKey{Ruleset: ruleset, Seq: *seq}}
		*seq++
		c.value.N = uint32(n)
		for i, r := range rest[:n] {
			c.value.Rules[i] = r.value()
		}
		if len(chunks) == 0 {
			v.More = c.key.Seq + 1
		} else {
			chunks[len(chunks)-1].value.Next = c.key.Seq + 1
		}
		chunks = append(chunks, c)
		rest = rest[n:]
	}
	return v, chunks
}

func (r portRule) value() holdfastPortRule {
	return holdfastPortRule{Lo: r.lo, Hi: r.hi, Proto: r.proto, From: r.from, RuleId: r.ruleID}
}

func checkProto(p uint8) error {
	switch p {
	case ProtoAny, ProtoTCP, ProtoUDP:
		return nil
	}
	return fmt.Errorf("protocol %d is not any, tcp or udp", p)
}
