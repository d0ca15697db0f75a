package bpf

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// maxPortRules is how many port rules one LPM value holds (MAX_PORT_RULES).
const maxPortRules = len(holdfastPortRules{}.Rules)

type portRule struct {
	lo, hi uint16
	proto  uint8
	ruleID uint32
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
// specific first, duplicates dropped). It fails if an entry would need more
// than maxPortRules rules.
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
		switch r.Proto {
		case ProtoAny, ProtoTCP, ProtoUDP:
		default:
			return nil, nil, fmt.Errorf("connect rule %d (rule id %d): protocol %d is not any, tcp or udp", i, r.RuleID, r.Proto)
		}
		own[p] = append(own[p], portRule{lo: r.PortLo, hi: r.PortHi, proto: r.Proto, ruleID: r.RuleID})
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
		var merged []portRule
		for _, q := range containing {
			for _, r := range own[q] {
				if !slices.ContainsFunc(merged, func(m portRule) bool { return m.lo == r.lo && m.hi == r.hi && m.proto == r.proto }) {
					merged = append(merged, r)
				}
			}
		}
		if len(merged) > maxPortRules {
			return nil, nil, fmt.Errorf("%d port rules apply to %s (its own and those of prefixes containing it), more than the %d one entry holds", len(merged), p, maxPortRules)
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

// Map representations of LPM entries. Key prefix lengths count the 32
// ruleset bits in front of the address.
func (e lpmEntry) value() holdfastPortRules {
	var v holdfastPortRules
	v.N = uint32(len(e.rules))
	for i, r := range e.rules {
		v.Rules[i].Lo, v.Rules[i].Hi, v.Rules[i].Proto, v.Rules[i].RuleId = r.lo, r.hi, r.proto, r.ruleID
	}
	return v
}

func (e lpmEntry) key4(ruleset uint32) holdfastNet4Key {
	return holdfastNet4Key{Prefixlen: 32 + uint32(e.prefix.Bits()), Ruleset: ruleset, Addr: e.prefix.Addr().As4()}
}

func (e lpmEntry) key6(ruleset uint32) holdfastNet6Key {
	return holdfastNet6Key{Prefixlen: 32 + uint32(e.prefix.Bits()), Ruleset: ruleset, Addr: e.prefix.Addr().As16()}
}
