package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/holdfast-dev/holdfast/bpf"
)

// Rule kinds, as reported in RuleInfo.Kind.
const (
	KindExec      = "exec" // exec.deny
	KindExecAllow = "exec-allow"
	KindConnect   = "connect"
	KindSocket    = "socket"
	KindBind      = "bind"
)

// SocketKinds are the names network.sockets.deny accepts and the
// (family, type, protocol) triples of socket() each refuses; "any" stands
// for every type or protocol.
var SocketKinds = map[string][]bpf.SocketRule{
	// raw IP sockets: socket(AF_INET or AF_INET6, SOCK_RAW, any)
	"raw": {{Family: afInet, Type: sockRaw, Protocol: bpf.SocketAny}, {Family: afInet6, Type: sockRaw, Protocol: bpf.SocketAny}},
	// ping sockets: socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)
	"icmp": {{Family: afInet, Type: sockDgram, Protocol: ipprotoICMP}, {Family: afInet6, Type: sockDgram, Protocol: ipprotoICMPv6}},
	// SCTP: socket(AF_INET or AF_INET6, any, IPPROTO_SCTP)
	"sctp": {{Family: afInet, Type: bpf.SocketAny, Protocol: ipprotoSCTP}, {Family: afInet6, Type: bpf.SocketAny, Protocol: ipprotoSCTP}},
	// Multipath TCP: socket(AF_INET or AF_INET6, SOCK_STREAM, IPPROTO_MPTCP)
	"mptcp": {{Family: afInet, Type: sockStream, Protocol: ipprotoMPTCP}, {Family: afInet6, Type: sockStream, Protocol: ipprotoMPTCP}},
	// packet sockets: socket(AF_PACKET, any, any), and the legacy
	// socket(AF_INET, SOCK_PACKET, any). These never reach
	// cgroup/sock_create, so the caller is killed (SIGKILL) at socket().
	"packet": {{Family: afPacket, Type: bpf.SocketAny, Protocol: bpf.SocketAny}},
	// UDP-Lite: socket(AF_INET or AF_INET6, SOCK_DGRAM, IPPROTO_UDPLITE)
	"udplite": {{Family: afInet, Type: sockDgram, Protocol: ipprotoUDPLite}, {Family: afInet6, Type: sockDgram, Protocol: ipprotoUDPLite}},
}

// Linux ABI numbers of the socket kinds.
const (
	afInet         = 2
	afInet6        = 10
	afPacket       = 17
	sockStream     = 1
	sockDgram      = 2
	sockRaw        = 3
	ipprotoICMP    = 1
	ipprotoICMPv6  = 58
	ipprotoUDPLite = 136
	ipprotoSCTP    = 132
	ipprotoMPTCP   = 262
)

// A Policy is one validated WorkloadPolicy document. It must not be
// modified: its Spec is in canonical form and its digest and rules are
// derived from it.
type Policy struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	File        string // as given to Parse or ParseFile
	Document    int    // 1-based position of its document in File
	// Spec is the spec as written, with every value in canonical form:
	// exec paths cleaned, CIDRs masked, ports as "N" or "N-M", protocols
	// lower case.
	Spec Spec

	loc         location
	pods        labels.Selector
	rules       []rule // in file order; a Set numbers them
	digest      string
	rulesDigest string
}

// rule is one compiled rule before a Set gives it an ID.
type rule struct {
	kind    string
	field   string // where it was written, e.g. "spec.exec.deny[0]"
	text    string
	exec    bpf.ExecRule
	net     bpf.NetRule
	from    []string // ancestor binaries the rule is scoped to (canonical)
	sockets []bpf.SocketRule
	bind    bpf.BindRule
}

// Digest is "sha256:" and the hex SHA-256 of the canonical spec, so it
// changes exactly when the policy's meaning or rule order changes, not when
// only its formatting does.
func (p *Policy) Digest() string { return p.digest }

// RulesDigest is Digest without the mode: it changes when the policy's
// selector, rules or their order change, not when only its mode does.
func (p *Policy) RulesDigest() string { return p.rulesDigest }

// Mode is ModeEnforce or ModeAudit.
func (p *Policy) Mode() string {
	if p.Spec.Mode == ModeAudit {
		return ModeAudit
	}
	return ModeEnforce
}

// Audit says whether the policy is in audit mode.
func (p *Policy) Audit() bool { return p.Mode() == ModeAudit }

func (c *checker) mode(m string) {
	switch m {
	case "", ModeEnforce, ModeAudit:
	default:
		c.addf("spec.mode", "%q is not a mode (want %q or %q)", m, ModeEnforce, ModeAudit)
	}
}

// Canonical returns the policy as a canonical JSON document (which is
// also valid YAML); parsing it yields a policy with the same digest.
func (p *Policy) Canonical() []byte {
	spec := p.Spec
	out, err := json.Marshal(document{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: p.Name, Labels: p.Labels, Annotations: p.Annotations},
		Spec:       &spec,
	})
	if err != nil {
		// Only strings, slices and maps of strings: cannot fail.
		panic(fmt.Sprintf("encode policy %s: %v", p.Name, err))
	}
	return out
}

// RuleCount is how many rules the policy compiles to: one per exec path
// (deny or allow), destination port range, socket kind and bind port range.
func (p *Policy) RuleCount() int { return len(p.rules) }

// containerName accepts Kubernetes (DNS-1123 label) and podman/docker
// container names.
var containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// policy validates a decoded document, putting it in canonical form.
func (c *checker) policy(doc *document) *Policy {
	switch doc.APIVersion {
	case APIVersion:
	case "":
		c.addf("apiVersion", "required (want %q)", APIVersion)
	default:
		c.addf("apiVersion", "%q is not supported (want %q)", doc.APIVersion, APIVersion)
	}
	switch doc.Kind {
	case Kind:
	case "":
		c.addf("kind", "required (want %q)", Kind)
	default:
		c.addf("kind", "%q is not supported (want %q)", doc.Kind, Kind)
	}
	c.metadata(&doc.Metadata)

	p := &Policy{
		Name:        doc.Metadata.Name,
		Labels:      doc.Metadata.Labels,
		Annotations: doc.Metadata.Annotations,
		File:        c.loc.file,
		Document:    c.loc.document,
		loc:         c.loc,
	}
	if doc.Spec == nil {
		c.addf("spec", "required")
		return p
	}
	p.Spec = *doc.Spec
	c.mode(p.Spec.Mode)
	p.pods = c.selector(&p.Spec.Selector)
	p.rules = append(c.exec(&p.Spec.Exec), c.connect(&p.Spec.Network.Connect)...)
	p.rules = append(p.rules, c.sockets(&p.Spec.Network.Sockets)...)
	p.rules = append(p.rules, c.bind(&p.Spec.Network.Bind)...)

	spec, err := json.Marshal(p.Spec)
	if err != nil {
		c.addf("spec", "encode canonical spec: %w", err)
		return p
	}
	sum := sha256.Sum256(spec)
	p.digest = "sha256:" + hex.EncodeToString(sum[:])
	// The rules digest leaves the mode out: switching it keeps rule IDs
	// and rulesets, and the kernel changes only the rules' modes in place.
	modeless := p.Spec
	modeless.Mode = ""
	if spec, err = json.Marshal(modeless); err != nil {
		c.addf("spec", "encode canonical spec: %w", err)
		return p
	}
	sum = sha256.Sum256(spec)
	p.rulesDigest = "sha256:" + hex.EncodeToString(sum[:])
	return p
}

func (c *checker) metadata(m *Metadata) {
	if m.Name == "" {
		c.addf("metadata.name", "required")
	} else if msgs := validation.IsDNS1123Subdomain(m.Name); len(msgs) > 0 {
		c.addf("metadata.name", "%q is not a valid name: %s", m.Name, strings.Join(msgs, "; "))
	}
	for _, k := range sortedStringKeys(m.Labels) {
		if _, err := labels.NewRequirement(k, selection.Equals, []string{m.Labels[k]}); err != nil {
			c.addf(fmt.Sprintf("metadata.labels[%s]", k), "invalid label: %w", err)
		}
	}
	for _, k := range sortedStringKeys(m.Annotations) {
		if k == "" {
			c.addf("metadata.annotations", "empty annotation key")
		}
	}
}

// selector validates a selector and compiles its pod label part. An absent
// or empty podLabels selects every pod.
func (c *checker) selector(s *Selector) labels.Selector {
	const base = "spec.selector"
	nonEmpty := func(name string, list []string) {
		if list != nil && len(list) == 0 {
			c.addf(base+"."+name, "empty list selects nothing; omit the field to match any")
		}
	}
	nonEmpty("namespaces", s.Namespaces)
	for i, ns := range s.Namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			c.addf(fmt.Sprintf("%s.namespaces[%d]", base, i), "%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
	nonEmpty("containers", s.Containers)
	for i, name := range s.Containers {
		if !containerName.MatchString(name) {
			c.addf(fmt.Sprintf("%s.containers[%d]", base, i), "%q is not a container name (letters, digits, '_', '.', '-')", name)
		}
	}
	nonEmpty("images", s.Images)
	for i, glob := range s.Images {
		field := fmt.Sprintf("%s.images[%d]", base, i)
		if glob == "" {
			c.addf(field, "empty image pattern")
		} else if _, err := path.Match(glob, ""); err != nil {
			c.addf(field, "%q is not a valid glob: %w", glob, err)
		}
	}

	ps := s.PodLabels
	if ps == nil || len(ps.MatchLabels)+len(ps.MatchExpressions) == 0 {
		s.PodLabels = nil // canonical: empty and absent mean the same
		return labels.Everything()
	}
	valid := true
	for _, k := range sortedStringKeys(ps.MatchLabels) {
		if _, err := labels.NewRequirement(k, selection.Equals, []string{ps.MatchLabels[k]}); err != nil {
			c.addf(fmt.Sprintf("%s.podLabels.matchLabels[%s]", base, k), "%w", err)
			valid = false
		}
	}
	for i, expr := range ps.MatchExpressions {
		one := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr}}
		if _, err := metav1.LabelSelectorAsSelector(one); err != nil {
			c.addf(fmt.Sprintf("%s.podLabels.matchExpressions[%d]", base, i), "%w", err)
			valid = false
		}
	}
	if !valid {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ps)
	if err != nil {
		c.addf(base+".podLabels", "%w", err)
		return nil
	}
	return sel
}

// exec validates exec paths, rewrites them in canonical form and returns
// one rule per path: the deny rules, then the allow rules.
func (c *checker) exec(e *Exec) []rule {
	if e.Allow != nil && len(e.Allow) == 0 {
		c.addf("spec.exec.allow", `empty list would allow nothing; omit the field, or deny "/" to refuse every exec`)
	}
	paths := make([]string, len(e.Deny))
	froms := make([]*From, len(e.Deny))
	for i, d := range e.Deny {
		paths[i], froms[i] = d.Path, d.From
	}
	rules := c.execPaths(paths, froms, "spec.exec.deny", KindExec, bpf.ExecExact, bpf.ExecPrefix)
	for i := range e.Deny {
		e.Deny[i].Path = paths[i]
	}
	return append(rules, c.execPaths(e.Allow, nil, "spec.exec.allow", KindExecAllow, bpf.ExecAllowExact, bpf.ExecAllowPrefix)...)
}

// execPaths compiles exec paths; froms, where given, scope each to
// ancestors.
func (c *checker) execPaths(paths []string, froms []*From, base, kind string, exact, prefixKind uint32) []rule {
	var rules []rule
	for i, p := range paths {
		field := fmt.Sprintf("%s[%d]", base, i)
		var from []string
		if froms != nil && froms[i] != nil {
			field += ".path"
			from = c.from(fmt.Sprintf("%s[%d].from", base, i), froms[i])
		}
		components, prefix, err := bpf.SplitPath(p)
		if err != nil {
			c.addf(field, "%w", err)
			continue
		}
		k := exact
		text := "/" + strings.Join(components, "/")
		if prefix {
			k = prefixKind
			if len(components) > 0 {
				text += "/"
			}
		}
		paths[i] = text
		rules = append(rules, rule{
			kind:  kind,
			field: strings.TrimSuffix(field, ".path"),
			text:  text,
			exec:  bpf.ExecRule{Kind: k, Components: components},
			from:  from,
		})
	}
	return rules
}

// connect validates destinations, rewrites them in canonical form and
// returns one rule per destination and port range.
func (c *checker) connect(conn *Connect) []rule {
	var rules []rule
	for i := range conn.Deny {
		d := &conn.Deny[i]
		field := fmt.Sprintf("spec.network.connect.deny[%d]", i)
		prefix, perr := parseCIDR(d.CIDR)
		if perr != nil {
			c.addf(field+".cidr", "%w", perr)
		}
		proto, name, ranges, ok := c.protocolPorts(field, d.Protocol, d.Ports)
		var from []string
		if d.From != nil {
			from = c.from(field+".from", d.From)
		}
		if perr != nil || !ok {
			continue
		}
		d.CIDR, d.Protocol = prefix.String(), name
		for _, r := range ranges {
			text := prefix.String()
			switch {
			case len(d.Ports) > 0:
				text += " " + name + " " + string(formatPorts(r.lo, r.hi))
			case proto != bpf.ProtoAny:
				text += " " + name
			}
			rules = append(rules, rule{
				kind:  KindConnect,
				field: r.field,
				text:  text,
				net:   bpf.NetRule{Prefix: prefix, PortLo: r.lo, PortHi: r.hi, Proto: proto},
				from:  from,
			})
		}
	}
	return rules
}

// protocolPorts validates the protocol and the ports of the rule at field;
// ok is false if either is invalid (each is reported).
func (c *checker) protocolPorts(field, protocol string, ports []PortRange) (proto uint8, name string, ranges []portRange, ok bool) {
	proto, name, err := parseProtocol(protocol)
	if err != nil {
		c.addf(field+".protocol", "%w", err)
	}
	ranges, portsOK := c.ports(field, ports)
	return proto, name, ranges, err == nil && portsOK
}

// portRange is one validated port range and the field it was written in.
type portRange struct {
	lo, hi uint16
	field  string
}

// ports validates the ports of the rule at field, rewrites them in
// canonical form and returns their ranges: all ports when none are given.
// ok is false if any is invalid (each is reported).
func (c *checker) ports(field string, ports []PortRange) (ranges []portRange, ok bool) {
	if len(ports) == 0 {
		return []portRange{{0, 65535, field}}, true
	}
	ok = true
	for j, s := range ports {
		pfield := fmt.Sprintf("%s.ports[%d]", field, j)
		lo, hi, err := parsePortRange(string(s))
		if err != nil {
			c.addf(pfield, "%w", err)
			ok = false
			continue
		}
		ports[j] = formatPorts(lo, hi)
		ranges = append(ranges, portRange{lo, hi, pfield})
	}
	return ranges, ok
}

// sockets validates socket kinds and returns one rule per kind.
func (c *checker) sockets(s *Sockets) []rule {
	var rules []rule
	for i, name := range s.Deny {
		field := fmt.Sprintf("spec.network.sockets.deny[%d]", i)
		lower := strings.ToLower(name)
		kind, ok := SocketKinds[lower]
		if !ok {
			c.addf(field, "%q is not a socket kind (%s)", name, strings.Join(slices.Sorted(maps.Keys(SocketKinds)), ", "))
			continue
		}
		s.Deny[i] = lower
		rules = append(rules, rule{kind: KindSocket, field: field, text: "socket " + lower, sockets: kind})
	}
	return rules
}

// bind validates bind rules, rewrites them in canonical form and returns
// one rule per port range.
func (c *checker) bind(b *Bind) []rule {
	var rules []rule
	for i := range b.Deny {
		d := &b.Deny[i]
		field := fmt.Sprintf("spec.network.bind.deny[%d]", i)
		proto, name, ranges, ok := c.protocolPorts(field, d.Protocol, d.Ports)
		if !ok {
			continue
		}
		d.Protocol = name
		for _, r := range ranges {
			text := "bind " + name
			if len(d.Ports) > 0 {
				text += " " + string(formatPorts(r.lo, r.hi))
			}
			rules = append(rules, rule{kind: KindBind, field: r.field, text: text, bind: bpf.BindRule{PortLo: r.lo, PortHi: r.hi, Proto: proto}})
		}
	}
	return rules
}

// parseCIDR accepts an IPv4 or IPv6 prefix, or a bare address as a single
// host. Host bits are cleared; an IPv4-mapped IPv6 prefix becomes the IPv4
// prefix it denotes, so it also applies to IPv4 sockets.
func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("required")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %s", s, netipReason(err))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an address: %s", s, netipReason(err))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// netipReason drops the echo of the input that netip puts before its reason.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

func parseProtocol(s string) (proto uint8, name string, err error) {
	switch strings.ToLower(s) {
	case "", "any":
		return bpf.ProtoAny, "any", nil
	case "tcp":
		return bpf.ProtoTCP, "tcp", nil
	case "udp":
		return bpf.ProtoUDP, "udp", nil
	}
	return 0, "", fmt.Errorf("%q is not a protocol (tcp, udp or any)", s)
}

// parsePortRange parses "N" or "N-M" with 1 <= N <= M <= 65535. Port 0
// cannot be connected to, so a rule naming it would be a mistake.
func parsePortRange(s string) (lo, hi uint16, err error) {
	if a, b, isRange := strings.Cut(s, "-"); isRange {
		l, okL := parsePort(a)
		h, okH := parsePort(b)
		if !okL || !okH {
			return 0, 0, fmt.Errorf("%q is not a port range (N-M, each 1-65535)", s)
		}
		if l > h {
			return 0, 0, fmt.Errorf("%q is not a port range: %d is above %d", s, l, h)
		}
		return l, h, nil
	}
	p, ok := parsePort(s)
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return p, p, nil
}

func parsePort(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

func formatPorts(lo, hi uint16) PortRange {
	if lo == hi {
		return PortRange(strconv.Itoa(int(lo)))
	}
	return PortRange(fmt.Sprintf("%d-%d", lo, hi))
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// from validates an ancestor scope and puts its paths in canonical form:
// binaries named exactly (no directory prefixes), each once.
func (c *checker) from(field string, f *From) []string {
	if len(f.Ancestors) == 0 {
		c.addf(field+".ancestors", "required: the binaries the rule applies below")
		return nil
	}
	var out []string
	for i, p := range f.Ancestors {
		af := fmt.Sprintf("%s.ancestors[%d]", field, i)
		components, prefix, err := bpf.SplitPath(p)
		if err != nil {
			c.addf(af, "%w", err)
			continue
		}
		if prefix {
			c.addf(af, "%q: an ancestor is one binary, not a directory", p)
			continue
		}
		text := "/" + strings.Join(components, "/")
		f.Ancestors[i] = text
		if !slices.Contains(out, text) {
			out = append(out, text)
		}
	}
	if len(out) > bpf.MaxAncestorClasses {
		c.addf(field+".ancestors", "%d binaries, at most %d", len(out), bpf.MaxAncestorClasses)
	}
	return out
}
