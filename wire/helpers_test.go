package wire

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
)

func TestNames(t *testing.T) {
	cases := []struct{ got, want string }{
		{IKE_SA_INIT.String(), "IKE_SA_INIT"},
		{IKE_INTERMEDIATE.String(), "IKE_INTERMEDIATE"},
		{ExchangeType(99).String(), "EXCHANGE(99)"},
		{PayloadIDr.String(), "IDr"},
		{PayloadSKF.String(), "SKF"},
		{PayloadType(49).String(), "PAYLOAD(49)"},
		{AUTHENTICATION_FAILED.String(), "AUTHENTICATION_FAILED"},
		{SWITCH_TO_IP_ADDRESS.String(), "SWITCH_TO_IP_ADDRESS"},
		{NotifyType(12345).String(), "NOTIFY(12345)"},
		{ProtoESP.String(), "ESP"},
		{ProtocolID(9).String(), "PROTO(9)"},
		{TransformINTEG.String(), "INTEG"},
		{TransformType(8).String(), "ADDKE3"},
		{TransformType(13).String(), "TRANSFORM(13)"},
		{ID_DER_ASN1_DN.String(), "ID_DER_ASN1_DN"},
		{IDType(4).String(), "ID(4)"},
		{AuthDigitalSignature.String(), "DIGITAL_SIGNATURE"},
		{AuthMethod(200).String(), "AUTH(200)"},
		{CFG_REPLY.String(), "CFG_REPLY"},
		{CfgType(0).String(), "CFG(0)"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	seen := map[string]bool{}
	for i, e := range notifyNames {
		if i > 0 && e.t <= notifyNames[i-1].t {
			t.Errorf("notifyNames not ascending at %s", e.name)
		}
		if seen[e.name] {
			t.Errorf("duplicate name %s", e.name)
		}
		seen[e.name] = true
		if got, ok := ParseNotifyType(e.name); !ok || got != e.t {
			t.Errorf("ParseNotifyType(%q) = %d %v", e.name, got, ok)
		}
	}
	if got, ok := ParseNotifyType("NOTIFY(12345)"); !ok || got != 12345 {
		t.Errorf("NOTIFY(12345): %d %v", got, ok)
	}
	for _, bad := range []string{"", "NOTIFY()", "NOTIFY(70000)", "NOTIFY(-1)", "authentication_failed"} {
		if _, ok := ParseNotifyType(bad); ok {
			t.Errorf("ParseNotifyType(%q) accepted", bad)
		}
	}
}

func TestNotifyAddress(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	good := []struct {
		n    *Notify
		want netip.Addr
	}{
		{NewAddressNotify(ADDITIONAL_IP4_ADDRESS, v4), v4},
		{NewAddressNotify(ADDITIONAL_IP4_ADDRESS, netip.MustParseAddr("::ffff:192.0.2.1")), v4},
		{NewAddressNotify(ADDITIONAL_IP6_ADDRESS, v6), v6},
		{NewAddressNotify(SWITCH_TO_IP_ADDRESS, v4), v4},
		{NewAddressNotify(SWITCH_TO_IP_ADDRESS, v6), v6},
	}
	for _, g := range good {
		if a, err := g.n.Address(); err != nil || a != g.want {
			t.Errorf("%v: %v %v", g.n, a, err)
		}
	}
	bad := []*Notify{
		NewAddressNotify(ADDITIONAL_IP4_ADDRESS, v6),
		NewAddressNotify(ADDITIONAL_IP6_ADDRESS, v4),
		{NotifyType: SWITCH_TO_IP_ADDRESS, Data: []byte{1, 2, 3}},
		{NotifyType: SWITCH_TO_IP_ADDRESS, Data: make([]byte, 17)},
		{NotifyType: SWITCH_TO_IP_ADDRESS},
		{NotifyType: SWITCH_TO_IP_ADDRESS, Protocol: ProtoESP, Data: v4.AsSlice()},
		{NotifyType: SWITCH_TO_IP_ADDRESS, SPI: []byte{1, 2, 3, 4}, Data: v4.AsSlice()},
		{NotifyType: COOKIE2, Data: v4.AsSlice()},
	}
	for _, n := range bad {
		if a, err := n.Address(); err == nil {
			t.Errorf("%+v gave %v", n, a)
		}
	}
}

func TestNotifyTypedData(t *testing.T) {
	if !NewMOBIKESupported(true).RMOBIKE() || NewMOBIKESupported(false).RMOBIKE() {
		t.Error("NewMOBIKESupported")
	}
	for _, n := range []*Notify{
		{NotifyType: MOBIKE_SUPPORTED, Data: []byte{0x52, 0x52}},
		{NotifyType: MOBIKE_SUPPORTED, Data: []byte{0x72}},
		{NotifyType: UPDATE_SA_ADDRESSES, Data: []byte{0x52}},
	} {
		if n.RMOBIKE() {
			t.Errorf("%v is not R-MOBIKE", n)
		}
	}
	if g, err := NewInvalidKE(DH_ECP384).Group(); err != nil || g != DH_ECP384 {
		t.Errorf("Group %d %v", g, err)
	}
	if _, err := (&Notify{NotifyType: INVALID_KE_PAYLOAD, Data: []byte{0, 19, 0}}).Group(); err == nil {
		t.Error("3-octet group accepted")
	}
	if _, err := (&Notify{NotifyType: COOKIE, Data: []byte{0, 19}}).Group(); err == nil {
		t.Error("Group of COOKIE accepted")
	}
	algs, err := NewSignatureHashAlgorithms(HashSHA2_256, HashIdentity).SignatureHashAlgorithms()
	if err != nil || len(algs) != 2 || algs[0] != HashSHA2_256 || algs[1] != HashIdentity {
		t.Errorf("%v %v", algs, err)
	}
	if _, err := (&Notify{NotifyType: SIGNATURE_HASH_ALGORITHMS, Data: []byte{0, 2, 0}}).SignatureHashAlgorithms(); err == nil {
		t.Error("odd length accepted")
	}
	if s := (&Notify{NotifyType: COOKIE, Data: []byte{0xab}}).String(); s != "COOKIE(ab)" {
		t.Errorf("String %q", s)
	}
}

func TestFind(t *testing.T) {
	ps := []Payload{
		&ID{Initiator: false, IDType: ID_FQDN, Data: []byte("r")},
		&Notify{NotifyType: ADDITIONAL_IP4_ADDRESS, Data: []byte{1, 1, 1, 1}},
		&ID{Initiator: true, IDType: ID_FQDN, Data: []byte("i")},
		&TS{Initiator: false},
		&Notify{NotifyType: ADDITIONAL_IP4_ADDRESS, Data: []byte{2, 2, 2, 2}},
		&TS{Initiator: true},
	}
	if id := Find[*ID](ps); id != ps[0] {
		t.Error("Find[*ID]")
	}
	if sa := Find[*SA](ps); sa != nil {
		t.Error("Find[*SA] found something")
	}
	if FindID(ps, true) != ps[2] || FindID(ps, false) != ps[0] || FindTS(ps, true) != ps[5] || FindTS(ps, false) != ps[3] {
		t.Error("FindID/FindTS")
	}
	if FindNotify(ps, ADDITIONAL_IP4_ADDRESS) != ps[1] || FindNotify(ps, COOKIE) != nil {
		t.Error("FindNotify")
	}
	if ns := FindNotifies(ps, ADDITIONAL_IP4_ADDRESS); len(ns) != 2 || ns[1] != ps[4] {
		t.Error("FindNotifies")
	}
}

// dnCNO is the DER of "CN=gw.example.org, O=Example" (RDNs in that order).
const dnCNO = `
	30 2b                    // SEQUENCE (RDNSequence), 43 octets
	31 17                    // SET (RDN)
	30 15                    // SEQUENCE (AttributeTypeAndValue)
	06 03 55 04 03           // OID 2.5.4.3 (commonName)
	13 0e 67 77 2e 65 78 61 6d 70 6c 65 2e 6f 72 67  // PrintableString "gw.example.org"
	31 10                    // SET
	30 0e                    // SEQUENCE
	06 03 55 04 0a           // OID 2.5.4.10 (organizationName)
	13 07 45 78 61 6d 70 6c 65  // PrintableString "Example"
`

func TestIDFromString(t *testing.T) {
	cases := []struct {
		in   string
		typ  IDType
		data []byte
		str  string
	}{
		{"198.51.100.7", ID_IPV4_ADDR, []byte{198, 51, 100, 7}, "198.51.100.7"},
		{"2001:db8::1", ID_IPV6_ADDR, netip.MustParseAddr("2001:db8::1").AsSlice(), "2001:db8::1"},
		{"gw.example.org", ID_FQDN, []byte("gw.example.org"), "gw.example.org"},
		{"@gw.example.org", ID_FQDN, []byte("gw.example.org"), "gw.example.org"},
		{"@198.51.100.7", ID_FQDN, []byte("198.51.100.7"), "198.51.100.7"},
		{"user@example.org", ID_RFC822_ADDR, []byte("user@example.org"), "user@example.org"},
		{"CN=gw.example.org, O=Example", ID_DER_ASN1_DN, hx(dnCNO), "CN=gw.example.org, O=Example"},
		{"cn=gw.example.org,o=Example", ID_DER_ASN1_DN, hx(dnCNO), "CN=gw.example.org, O=Example"},
		{"/CN=gw.example.org/O=Example", ID_DER_ASN1_DN, hx(dnCNO), "CN=gw.example.org, O=Example"},
		{"@#01ab", ID_KEY_ID, []byte{1, 0xab}, "@#01ab"},
		{"keyid:#01ab", ID_KEY_ID, []byte{1, 0xab}, "@#01ab"},
		{"fqdn:user@x", ID_FQDN, []byte("user@x"), "user@x"},
		{"email:x", ID_RFC822_ADDR, []byte("x"), "x"},
		{"%null", ID_NULL, nil, "%null"},
		{"fe80::1%eth0", ID_FQDN, []byte("fe80::1%eth0"), "fe80::1%eth0"},
		{"X=1", ID_FQDN, []byte("X=1"), "X=1"}, // not a DN attribute: strongSwan falls back too
	}
	for _, c := range cases {
		id := IDFromString(c.in)
		if id.IDType != c.typ || !bytes.Equal(id.Data, c.data) {
			t.Errorf("IDFromString(%q) = %v %x, want %v %x", c.in, id.IDType, id.Data, c.typ, c.data)
			continue
		}
		if s := id.String(); s != c.str {
			t.Errorf("%q: String() = %q, want %q", c.in, s, c.str)
		}
	}
	// Email and DC are IA5Strings; other printable values PrintableString; else UTF8String.
	id := IDFromString("C=CH, E=gw@example.org, CN=Zürich")
	want := hx(`
		30 3e                                                  // RDNSequence, 62 octets
		31 0b 30 09 06 03 55 04 06 13 02 43 48                 // C, PrintableString "CH"
		31 1d 30 1b 06 09 2a 86 48 86 f7 0d 01 09 01           // OID 1.2.840.113549.1.9.1 (emailAddress)
		16 0e 67 77 40 65 78 61 6d 70 6c 65 2e 6f 72 67        // IA5String "gw@example.org"
		31 10 30 0e 06 03 55 04 03 0c 07 5a c3 bc 72 69 63 68  // CN, UTF8String "Zürich"
	`)
	if !bytes.Equal(id.Data, want) {
		t.Errorf("DER %x\nwant %x", id.Data, want)
	}
	if id.IDType != ID_DER_ASN1_DN || id.String() != "C=CH, E=gw@example.org, CN=Zürich" {
		t.Errorf("%v %q %x", id.IDType, id.String(), id.Data)
	}
}

func TestIDEqualAndString(t *testing.T) {
	a := ID{IDType: ID_DER_ASN1_DN, Data: hx(dnCNO)}
	// The same DN with UTF8String values and another case.
	b := IDFromString("CN=GW.example.org, O=Example")
	b.Data = bytes.ReplaceAll(b.Data, []byte{0x13, 0x0e}, []byte{0x0c, 0x0e})
	if !a.Equal(&b) {
		t.Error("DNs differing in string type and case are not equal")
	}
	c := IDFromString("CN=gw.example.org, O=Other")
	if a.Equal(&c) {
		t.Error("different DNs equal")
	}
	fq1, fq2 := IDFromString("GW.example.org"), IDFromString("gw.example.org")
	if !fq1.Equal(&fq2) {
		t.Error("FQDN comparison is case-sensitive")
	}
	r1, r2 := IDFromString("User@example.org"), IDFromString("user@example.org")
	if r1.Equal(&r2) {
		t.Error("RFC822 local parts compared without case")
	}
	bad := ID{IDType: ID_DER_ASN1_DN, Data: []byte{0x30, 0x05}}
	if s := bad.String(); s != "#3005" {
		t.Errorf("bad DN String %q", s)
	}
	ctl := ID{IDType: ID_FQDN, Data: []byte("a\x00b\n")}
	if s := ctl.String(); s != "a?b?" {
		t.Errorf("String %q", s)
	}
}

func TestTrafficSelector(t *testing.T) {
	cases := []struct {
		ts   TrafficSelector
		want string
	}{
		{TSFromPrefix(netip.MustParsePrefix("198.18.0.0/16")), "198.18.0.0/16"},
		{TSFromPrefix(netip.MustParsePrefix("198.18.7.9/16")), "198.18.0.0/16"},
		{TSFromPrefix(netip.MustParsePrefix("0.0.0.0/0")), "0.0.0.0/0"},
		{TSFromPrefix(netip.MustParsePrefix("192.0.2.1/32")), "192.0.2.1/32"},
		{TSFromPrefix(netip.MustParsePrefix("2001:db8::/33")), "2001:db8::/33"},
		{TSFromPrefix(netip.MustParsePrefix("::/0")), "::/0"},
		{TrafficSelector{Type: TS_IPV4_ADDR_RANGE, IPProtocol: 6, StartPort: 80, EndPort: 80,
			Start: netip.MustParseAddr("198.18.0.1"), End: netip.MustParseAddr("198.18.0.9")}, "198.18.0.1-198.18.0.9[tcp/80-80]"},
		{TrafficSelector{Type: TS_IPV4_ADDR_RANGE, IPProtocol: 17, EndPort: 0xffff,
			Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.255.255.255")}, "10.0.0.0/8[udp]"},
		{TrafficSelector{Type: TS_IPV4_ADDR_RANGE, StartPort: 500, EndPort: 500,
			Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.0.0.4")}, "10.0.0.0-10.0.0.4[any/500-500]"},
	}
	for _, c := range cases {
		if s := c.ts.String(); s != c.want {
			t.Errorf("String() = %q, want %q", s, c.want)
		}
	}
	ts := TSFromPrefix(netip.MustParsePrefix("10.1.0.0/16"))
	if ts.Type != TS_IPV4_ADDR_RANGE || ts.End != netip.MustParseAddr("10.1.255.255") || !ts.AllPorts() {
		t.Errorf("%+v", ts)
	}
	if !ts.Contains(netip.MustParseAddr("10.1.2.3")) || ts.Contains(netip.MustParseAddr("10.2.0.0")) ||
		ts.Contains(netip.MustParseAddr("::ffff:10.0.0.1")) || !ts.Contains(netip.MustParseAddr("::ffff:10.1.0.1")) {
		t.Error("Contains")
	}
	if p, ok := ts.Prefix(); !ok || p != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("Prefix %v %v", p, ok)
	}
	// A selector without a type is written as the type of its addresses.
	sel := TrafficSelector{StartPort: 0, EndPort: 0xffff, Start: netip.MustParseAddr("::ffff:10.0.0.1"), End: netip.MustParseAddr("10.0.0.2")}
	body := (&TS{Selectors: []TrafficSelector{sel}}).AppendBody(nil)
	if want := hx("01000000 07000010 0000ffff 0a000001 0a000002"); !bytes.Equal(body, want) {
		t.Errorf("%x", body)
	}
}

func TestPrefixes(t *testing.T) {
	cases := []struct {
		start, end string
		want       []string
	}{
		{"198.18.0.0", "198.18.0.255", []string{"198.18.0.0/24"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"198.18.100.1", "198.18.100.1", []string{"198.18.100.1/32"}},
		{"10.0.0.1", "10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", []string{"2001:db8::/64"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"255.255.255.254", "255.255.255.255", []string{"255.255.255.254/31"}},
		{"198.18.0.5", "198.18.0.4", nil},
		{"198.18.0.5", "2001:db8::", nil},
	}
	for _, c := range cases {
		ts := TrafficSelector{Start: netip.MustParseAddr(c.start), End: netip.MustParseAddr(c.end)}
		got := ts.Prefixes()
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if !slices.Equal(s, c.want) {
			t.Errorf("%s-%s: %v, want %v", c.start, c.end, s, c.want)
		}
		// Prefix is the one-prefix case of Prefixes.
		p, ok := ts.Prefix()
		if ok != (len(got) == 1) || ok && p != got[0] {
			t.Errorf("%s-%s: Prefix %v %v", c.start, c.end, p, ok)
		}
	}
	// The longest decompositions there are: 2*bits-2 prefixes, up to the last address.
	v4 := TrafficSelector{Start: netip.MustParseAddr("0.0.0.1"), End: netip.MustParseAddr("255.255.255.254")}
	if got := v4.Prefixes(); len(got) != 62 || got[0] != netip.MustParsePrefix("0.0.0.1/32") || got[61] != netip.MustParsePrefix("255.255.255.254/32") {
		t.Errorf("longest IPv4 range: %d prefixes %v", len(got), got)
	}
	v6 := TrafficSelector{Start: netip.MustParseAddr("::1"), End: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	if got := v6.Prefixes(); len(got) != 128 || got[127] != netip.MustParsePrefix("8000::/1") {
		t.Errorf("IPv6 range to the last address: %d prefixes", len(got))
	}
}

func TestConfigAttrs(t *testing.T) {
	a := AddrAttr(INTERNAL_IP4_DNS, netip.MustParseAddr("192.0.2.53"))
	if got, ok := a.Addr(); !ok || got != netip.MustParseAddr("192.0.2.53") {
		t.Error("IPv4 DNS")
	}
	p6 := PrefixAttr(INTERNAL_IP6_ADDRESS, netip.MustParsePrefix("2001:db8::5/64"))
	if got, ok := p6.Addr(); !ok || got != netip.MustParseAddr("2001:db8::5") {
		t.Error("IPv6 address")
	}
	if got, ok := p6.Prefix(); !ok || got != netip.MustParsePrefix("2001:db8::5/64") {
		t.Error("IPv6 address prefix")
	}
	p4 := PrefixAttr(INTERNAL_IP4_SUBNET, netip.MustParsePrefix("10.0.0.0/12"))
	if !bytes.Equal(p4.Value, []byte{10, 0, 0, 0, 255, 240, 0, 0}) {
		t.Errorf("%x", p4.Value)
	}
	if got, ok := p4.Prefix(); !ok || got != netip.MustParsePrefix("10.0.0.0/12") {
		t.Error("IPv4 subnet")
	}
	if _, ok := (ConfigAttr{Type: INTERNAL_IP4_SUBNET, Value: []byte{10, 0, 0, 0, 255, 0, 255, 0}}).Prefix(); ok {
		t.Error("non-contiguous netmask accepted")
	}
	if _, ok := (ConfigAttr{Type: INTERNAL_IP6_SUBNET, Value: append(make([]byte, 16), 129)}).Prefix(); ok {
		t.Error("prefix length 129 accepted")
	}
	if _, ok := (ConfigAttr{Type: INTERNAL_IP4_ADDRESS}).Addr(); ok {
		t.Error("empty attribute has an address")
	}
}
