package wire

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ID_NULL is the NULL identity type of RFC 7619.
const ID_NULL IDType = 13

// Type returns PayloadIDi or PayloadIDr.
func (id *ID) Type() PayloadType {
	if id.Initiator {
		return PayloadIDi
	}
	return PayloadIDr
}

// ParseID decodes an IDi (initiator true) or IDr payload body: ID Type (1 octet),
// RESERVED (3), identification data. ID_IPV4_ADDR data must be 4 octets and
// ID_IPV6_ADDR data 16; other types are kept as they are.
func ParseID(body []byte, initiator bool) (*ID, error) {
	pt := PayloadIDr
	if initiator {
		pt = PayloadIDi
	}
	if len(body) < 4 {
		return nil, syntaxErr(pt, "body is %d octets, want at least 4", len(body))
	}
	id := &ID{Initiator: initiator, IDType: IDType(body[0]), Data: clone(body[4:])}
	switch {
	case id.IDType == ID_IPV4_ADDR && len(id.Data) != 4:
		return nil, syntaxErr(pt, "ID_IPV4_ADDR data is %d octets, want 4", len(id.Data))
	case id.IDType == ID_IPV6_ADDR && len(id.Data) != 16:
		return nil, syntaxErr(pt, "ID_IPV6_ADDR data is %d octets, want 16", len(id.Data))
	}
	return id, nil
}

// AppendBody appends the ID payload body.
func (id *ID) AppendBody(b []byte) []byte {
	return append(append(b, byte(id.IDType), 0, 0, 0), id.Data...)
}

// String returns the identity as text: FQDN and RFC822 names as they are (octets
// outside printable ASCII become '?'), addresses in netip notation, a DN as
// "CN=gw.example.org, O=Example" (or "#" and the hex of a DER that does not parse),
// a KEY_ID as "@#" and hex, ID_NULL as "%null", anything else as hex. IDFromString reads
// back the FQDN, RFC822, address, parsable DN, KEY_ID and NULL forms.
func (id *ID) String() string {
	switch id.IDType {
	case ID_FQDN, ID_RFC822_ADDR:
		return printable(id.Data)
	case ID_IPV4_ADDR, ID_IPV6_ADDR:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case ID_DER_ASN1_DN:
		if s, err := formatDN(id.Data); err == nil {
			return s
		}
		return "#" + hex.EncodeToString(id.Data)
	case ID_KEY_ID:
		return "@#" + hex.EncodeToString(id.Data)
	case ID_NULL:
		return "%null"
	}
	return hex.EncodeToString(id.Data)
}

// Equal reports whether id and o name the same identity (the Initiator flag aside).
// Distinguished names are compared attribute by attribute, ignoring the ASN.1 string
// type and the case of the values, as RFC 5280 7.1 suggests; other types byte by byte.
func (id *ID) Equal(o *ID) bool {
	if id.IDType != o.IDType {
		return false
	}
	if id.IDType == ID_DER_ASN1_DN {
		a, errA := parseRDNs(id.Data)
		b, errB := parseRDNs(o.Data)
		if errA == nil && errB == nil {
			return equalRDNs(a, b)
		}
	}
	if id.IDType == ID_FQDN {
		return bytes.EqualFold(id.Data, o.Data)
	}
	return bytes.Equal(id.Data, o.Data)
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// IDFromString builds an identity from configuration text, after strongSwan's rules:
//   - "%null" is ID_NULL; a prefix "fqdn:", "email:", "rfc822:", "userfqdn:", "keyid:"
//     (text, or "#" and hex), "ipv4:", "ipv6:" or "asn1dn:" names the type explicitly;
//   - text containing '=' is an ID_DER_ASN1_DN ("CN=gw.example.org, O=Example", RDNs in
//     the order written, ',' or '/' between them, '\' escaping), when it parses as one;
//   - without '@': an IP address is ID_IPV4_ADDR or ID_IPV6_ADDR, anything else ID_FQDN;
//   - "@#hex" is an ID_KEY_ID, "@name" an ID_FQDN "name", "user@name" an ID_RFC822_ADDR.
func IDFromString(s string) ID {
	if s == "%null" {
		return ID{IDType: ID_NULL}
	}
	if typ, rest, ok := idPrefix(s); ok {
		switch typ {
		case ID_KEY_ID:
			if h, ok := strings.CutPrefix(rest, "#"); ok {
				if d, err := hex.DecodeString(h); err == nil {
					return ID{IDType: ID_KEY_ID, Data: clone(d)}
				}
			}
			return ID{IDType: ID_KEY_ID, Data: clone([]byte(rest))}
		case ID_IPV4_ADDR, ID_IPV6_ADDR:
			if a, err := netip.ParseAddr(rest); err == nil && a.Zone() == "" {
				return addrID(a)
			}
		case ID_DER_ASN1_DN:
			if der, err := encodeDN(rest); err == nil {
				return ID{IDType: ID_DER_ASN1_DN, Data: der}
			}
		default:
			return ID{IDType: typ, Data: clone([]byte(rest))}
		}
	}
	if strings.Contains(s, "=") {
		if der, err := encodeDN(s); err == nil {
			return ID{IDType: ID_DER_ASN1_DN, Data: der}
		}
	}
	at := strings.IndexByte(s, '@')
	switch {
	case at < 0:
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			return addrID(a)
		}
		return ID{IDType: ID_FQDN, Data: clone([]byte(s))}
	case at == 0:
		if h, ok := strings.CutPrefix(s, "@#"); ok {
			if d, err := hex.DecodeString(h); err == nil && len(d) > 0 {
				return ID{IDType: ID_KEY_ID, Data: d}
			}
		}
		return ID{IDType: ID_FQDN, Data: clone([]byte(s[1:]))}
	}
	return ID{IDType: ID_RFC822_ADDR, Data: []byte(s)}
}

func idPrefix(s string) (IDType, string, bool) {
	prefixes := [...]struct {
		p string
		t IDType
	}{
		{"fqdn:", ID_FQDN}, {"email:", ID_RFC822_ADDR}, {"rfc822:", ID_RFC822_ADDR},
		{"userfqdn:", ID_RFC822_ADDR}, {"keyid:", ID_KEY_ID}, {"ipv4:", ID_IPV4_ADDR},
		{"ipv6:", ID_IPV6_ADDR}, {"asn1dn:", ID_DER_ASN1_DN},
	}
	for _, e := range prefixes {
		if rest, ok := strings.CutPrefix(s, e.p); ok {
			return e.t, rest, true
		}
	}
	return 0, "", false
}

func addrID(a netip.Addr) ID {
	if a.Is4() {
		b := a.As4()
		return ID{IDType: ID_IPV4_ADDR, Data: b[:]}
	}
	b := a.As16()
	return ID{IDType: ID_IPV6_ADDR, Data: b[:]}
}

// dnAttrs maps DN attribute names to OIDs; the first name of an OID is the one printed.
var dnAttrs = [...]struct {
	name string
	oid  []int
	ia5  bool
}{
	{"C", []int{2, 5, 4, 6}, false},
	{"ST", []int{2, 5, 4, 8}, false},
	{"S", []int{2, 5, 4, 8}, false},
	{"L", []int{2, 5, 4, 7}, false},
	{"O", []int{2, 5, 4, 10}, false},
	{"OU", []int{2, 5, 4, 11}, false},
	{"CN", []int{2, 5, 4, 3}, false},
	{"SN", []int{2, 5, 4, 4}, false},
	{"serialNumber", []int{2, 5, 4, 5}, false},
	{"street", []int{2, 5, 4, 9}, false},
	{"T", []int{2, 5, 4, 12}, false},
	{"title", []int{2, 5, 4, 12}, false},
	{"postalCode", []int{2, 5, 4, 17}, false},
	{"G", []int{2, 5, 4, 42}, false},
	{"GN", []int{2, 5, 4, 42}, false},
	{"I", []int{2, 5, 4, 43}, false},
	{"dnQualifier", []int{2, 5, 4, 46}, false},
	{"pseudonym", []int{2, 5, 4, 65}, false},
	{"E", []int{1, 2, 840, 113549, 1, 9, 1}, true},
	{"emailAddress", []int{1, 2, 840, 113549, 1, 9, 1}, true},
	{"DC", []int{0, 9, 2342, 19200300, 100, 1, 25}, true},
	{"UID", []int{0, 9, 2342, 19200300, 100, 1, 1}, false},
}

// encodeDN encodes text such as "C=CH, O=Example, CN=gw" as a DER Name, RDNs in the
// order written.
func encodeDN(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	sep := byte(',')
	if strings.HasPrefix(s, "/") {
		sep = '/'
		s = s[1:]
	}
	parts, err := splitEscaped(s, sep)
	if err != nil {
		return nil, err
	}
	var rdns pkix.RDNSequence
	for _, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, errors.New("RDN without a type")
		}
		oid, ia5, err := dnOID(k)
		if err != nil {
			return nil, err
		}
		var val any = v
		if ia5 {
			enc, err := asn1.MarshalWithParams(v, "ia5")
			if err != nil {
				return nil, err
			}
			val = asn1.RawValue{FullBytes: enc}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: val}})
	}
	return asn1.Marshal(rdns)
}

// splitEscaped splits s at unescaped sep and removes the '\' escapes.
func splitEscaped(s string, sep byte) ([]string, error) {
	var parts []string
	var cur []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur = append(cur, s[i])
		case c == sep:
			parts = append(parts, string(cur))
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
	return append(parts, string(cur)), nil
}

func dnOID(name string) (asn1.ObjectIdentifier, bool, error) {
	for _, a := range dnAttrs {
		if strings.EqualFold(a.name, name) {
			return a.oid, a.ia5, nil
		}
	}
	var oid asn1.ObjectIdentifier
	for _, f := range strings.Split(name, ".") {
		n := 0
		if f == "" || len(f) > 9 {
			return nil, false, fmt.Errorf("unknown DN attribute %q", name)
		}
		for _, c := range f {
			if c < '0' || c > '9' {
				return nil, false, fmt.Errorf("unknown DN attribute %q", name)
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, false, fmt.Errorf("unknown DN attribute %q", name)
	}
	return oid, false, nil
}

func parseRDNs(der []byte) (pkix.RDNSequence, error) {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after DN")
	}
	return rdns, nil
}

// formatDN renders a DER Name as "C=CH, O=Example, CN=gw", in encoded order.
func formatDN(der []byte) (string, error) {
	rdns, err := parseRDNs(der)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, rdn := range rdns {
		if i > 0 {
			sb.WriteString(", ")
		}
		for j, atv := range rdn {
			if j > 0 {
				sb.WriteString(" + ")
			}
			sb.WriteString(oidName(atv.Type))
			sb.WriteByte('=')
			sb.WriteString(escapeDNValue(dnValue(atv.Value)))
		}
	}
	return sb.String(), nil
}

func oidName(oid asn1.ObjectIdentifier) string {
	for _, a := range dnAttrs {
		if oid.Equal(a.oid) {
			return a.name
		}
	}
	return oid.String()
}

func dnValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func escapeDNValue(v string) string {
	if !strings.ContainsAny(v, ",/+\\") {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if strings.IndexByte(",/+\\", v[i]) >= 0 {
			sb.WriteByte('\\')
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

func equalRDNs(a, b pkix.RDNSequence) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			x, y := a[i][j], b[i][j]
			if !x.Type.Equal(y.Type) || !strings.EqualFold(dnValue(x.Value), dnValue(y.Value)) {
				return false
			}
		}
	}
	return true
}
