package killswitch

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// defaultTable is the nftables table (family inet) the kill switch owns when Options
// name none.
const defaultTable = "mobikevpn"

// counterName is the table's named counter: every drop rule counts into it.
const counterName = "dropped"

// maxIfName is the longest interface name Linux takes (IFNAMSIZ less the NUL).
const maxIfName = 15

// Spec is what the kill switch lets through and what it blocks.
type Spec struct {
	// Dev is the TUN device: traffic out of it is allowed.
	Dev string
	// Mark is the SO_MARK of the daemon's IKE and ESP sockets: packets with it are
	// allowed out of any interface. It must not be 0, the mark of every unmarked
	// packet.
	Mark uint32
	// Block are the destinations that must not leave through any interface but Dev
	// (0.0.0.0/0 and ::/0 in a full tunnel). Overlapping prefixes are merged.
	Block []netip.Prefix
	// LinkSetup also allows what a host needs to get a network back when everything
	// is blocked: the DHCPv4 client (UDP 68 to 67), the DHCPv6 client (UDP 546 to
	// 547), ICMPv6 router solicitations and neighbour solicitations and
	// advertisements. The daemon sets it in full tunnels.
	LinkSetup bool
}

// Script returns the nft script that Set runs for s on the table named table (family
// inet): one transaction that creates the table if it is missing, deletes it, and
// defines it again, so the new rules replace the old ones at once. It checks that
// table is a plain name, that s.Dev is a valid interface name, that s.Mark is not 0
// and that every prefix of s.Block is valid.
func Script(table string, s Spec) (string, error) {
	if err := checkTable(table); err != nil {
		return "", err
	}
	if err := checkDev(s.Dev); err != nil {
		return "", err
	}
	if s.Mark == 0 {
		return "", errors.New("kill switch: mark 0 is every unmarked packet's; the daemon's sockets need a mark of their own")
	}
	v4, v6, err := splitPrefixes(s.Block)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", table, table)
	fmt.Fprintf(&b, "table inet %s {\n", table)
	fmt.Fprintf(&b, "\tcounter %s {\n\t}\n", counterName)
	writeSet(&b, "block4", "ipv4_addr", v4)
	writeSet(&b, "block6", "ipv6_addr", v6)

	drops := dropRules(v4, v6)
	b.WriteString("\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n")
	b.WriteString("\t\toifname \"lo\" accept\n")
	fmt.Fprintf(&b, "\t\toifname %q accept\n", s.Dev)
	fmt.Fprintf(&b, "\t\tmeta mark 0x%08x accept\n", s.Mark)
	if s.LinkSetup {
		b.WriteString("\t\tmeta nfproto ipv4 udp sport 68 udp dport 67 accept\n")
		b.WriteString("\t\tmeta nfproto ipv6 udp sport 546 udp dport 547 accept\n")
		b.WriteString("\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept\n")
	}
	b.WriteString(drops)
	b.WriteString("\t}\n")

	b.WriteString("\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	fmt.Fprintf(&b, "\t\toifname %q accept\n", s.Dev)
	b.WriteString(drops)
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

// removeScript deletes the table, and succeeds whether or not it exists (it is
// created first, in the same transaction).
func removeScript(table string) string {
	return fmt.Sprintf("table inet %s\ndelete table inet %s\n", table, table)
}

// writeSet writes a named interval set of prefixes; nothing when there are none.
func writeSet(b *strings.Builder, name, typ string, ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	elems := make([]string, len(ps))
	for i, p := range ps {
		elems[i] = p.String()
	}
	fmt.Fprintf(b, "\n\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t\telements = { %s }\n\t}\n",
		name, typ, strings.Join(elems, ", "))
}

// dropRules are the rules that drop toward the blocked sets, one per family that has
// prefixes, each counting into the table's counter.
func dropRules(v4, v6 []netip.Prefix) string {
	var b strings.Builder
	if len(v4) > 0 {
		fmt.Fprintf(&b, "\t\tip daddr @block4 counter name %q drop\n", counterName)
	}
	if len(v6) > 0 {
		fmt.Fprintf(&b, "\t\tip6 daddr @block6 counter name %q drop\n", counterName)
	}
	return b.String()
}

// splitPrefixes validates ps, masks them, splits them by family and merges them: a
// prefix inside another one is left out, since nft refuses overlapping elements in an
// interval set. IPv4-mapped IPv6 prefixes stay IPv6.
func splitPrefixes(ps []netip.Prefix) (v4, v6 []netip.Prefix, err error) {
	for _, p := range ps {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("kill switch: invalid prefix %v", p)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return mergePrefixes(v4), mergePrefixes(v6), nil
}

// mergePrefixes sorts prefixes of one family and drops those covered by another one.
// Two prefixes either nest or are disjoint, so after sorting by address and then by
// length, a prefix is covered exactly when the last one kept contains it.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// checkDev accepts the interface names Linux takes (at most 15 bytes, not "." or
// "..", no '/', ':' or white space) that can also stand in an nft string as they are:
// printable ASCII without '"', '\' or '*' (which nft reads as a wildcard).
func checkDev(dev string) error {
	if dev == "" {
		return errors.New("kill switch: no TUN device")
	}
	bad := len(dev) > maxIfName || dev == "." || dev == ".."
	for i := 0; i < len(dev) && !bad; i++ {
		c := dev[i]
		bad = c <= ' ' || c >= 0x7f || strings.IndexByte(`/:"\*`, c) >= 0
	}
	if bad {
		return fmt.Errorf("kill switch: %q is not a valid interface name (at most %d printable ASCII characters, none of space, '/', ':', '\"', '\\', '*')", dev, maxIfName)
	}
	return nil
}

// checkTable accepts table names that nft reads as a plain identifier: a letter, then
// letters, digits and '_', at most 64 in all.
func checkTable(table string) error {
	ok := table != "" && len(table) <= 64
	for i := 0; i < len(table) && ok; i++ {
		c := table[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		ok = letter || i > 0 && (c >= '0' && c <= '9' || c == '_')
	}
	if !ok {
		return fmt.Errorf("kill switch: %q is not a valid table name (a letter, then letters, digits or '_', at most 64)", table)
	}
	return nil
}
