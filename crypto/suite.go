package crypto

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mobikevpn/mobikevpn/wire"
)

// IKESuite is the negotiated algorithm set of an IKE SA. Integ is AUTH_NONE with an
// AEAD. EncrKeyBits is the Key Length attribute (0 for ChaCha20-Poly1305, which has
// none).
type IKESuite struct {
	Encr, EncrKeyBits, Integ, PRF, DH uint16
	// AddKE are the additional key exchange methods ADDKE1..7 (RFC 9370), 0 for none.
	AddKE [7]uint16
}

// NextAddKE returns the index (0 for ADDKE1) and method of the first additional key
// exchange at index from or later, or -1 when none is left.
func (s IKESuite) NextAddKE(from int) (int, uint16) { return nextAddKE(&s.AddKE, from) }

// ESPSuite is the negotiated algorithm set of an ESP Child SA. DH is the PFS key
// exchange method, or DH_NONE (0) without PFS; AddKE are the additional key exchange
// methods ADDKE1..7 (RFC 9370, run in IKE_FOLLOWUP_KE exchanges), 0 for none.
type ESPSuite struct {
	Encr, EncrKeyBits, Integ, DH uint16
	ESN                          bool
	AddKE                        [7]uint16
}

// NextAddKE returns the index (0 for ADDKE1) and method of the first additional key
// exchange at index from or later, or -1 when none is left.
func (s ESPSuite) NextAddKE(from int) (int, uint16) { return nextAddKE(&s.AddKE, from) }

func nextAddKE(a *[7]uint16, from int) (int, uint16) {
	for i := max(from, 0); i < len(a); i++ {
		if a[i] != 0 {
			return i, a[i]
		}
	}
	return -1, 0
}

// addKENames appends the strongSwan names of the additional key exchanges
// ("ke1_mlkem768").
func addKENames(parts []string, a *[7]uint16) []string {
	for i, ke := range a {
		if ke != 0 {
			parts = append(parts, "ke"+strconv.Itoa(i+1)+"_"+dhName(ke))
		}
	}
	return parts
}

// suiteTransforms sorts a selected proposal's transforms by type and checks that each
// type appears at most once and is one this package knows.
func suiteTransforms(p wire.Proposal) (map[wire.TransformType]wire.Transform, error) {
	m := make(map[wire.TransformType]wire.Transform, len(p.Transforms))
	for _, t := range p.Transforms {
		if _, dup := m[t.Type]; dup {
			return nil, fmt.Errorf("ikecrypto: proposal has more than one %s transform", typeName(t.Type))
		}
		if !transformKnown(&t) {
			return nil, fmt.Errorf("ikecrypto: unsupported transform %s", transformName(t))
		}
		m[t.Type] = t
	}
	return m, nil
}

// encrAndInteg checks the ENCR and INTEG transforms of a selected proposal.
func encrAndInteg(m map[wire.TransformType]wire.Transform) (enc *encrAlg, integ uint16, err error) {
	et, ok := m[wire.TransformENCR]
	if !ok {
		return nil, 0, fmt.Errorf("ikecrypto: proposal has no encryption transform")
	}
	enc = lookupEncr(et.ID, int(et.KeyLength()))
	it, hasInteg := m[wire.TransformINTEG]
	if enc.aead {
		if hasInteg && it.ID != wire.AUTH_NONE {
			return nil, 0, fmt.Errorf("ikecrypto: integrity transform %s with AEAD %s", transformName(it), enc.name)
		}
		return enc, wire.AUTH_NONE, nil
	}
	if !hasInteg || it.ID == wire.AUTH_NONE {
		return nil, 0, fmt.Errorf("ikecrypto: %s needs an integrity transform", enc.name)
	}
	return enc, it.ID, nil
}

// IKESuiteFromProposal reads the suite of a selected IKE proposal, which must have
// exactly one ENCR, PRF and DH transform, plus one INTEG unless ENCR is an AEAD (then
// none, or AUTH_NONE), all of them implemented here.
func IKESuiteFromProposal(p wire.Proposal) (IKESuite, error) {
	if p.Protocol != wire.ProtoIKE {
		return IKESuite{}, fmt.Errorf("ikecrypto: proposal protocol is %d, not IKE", p.Protocol)
	}
	m, err := suiteTransforms(p)
	if err != nil {
		return IKESuite{}, err
	}
	enc, integ, err := encrAndInteg(m)
	if err != nil {
		return IKESuite{}, err
	}
	if _, ok := m[wire.TransformESN]; ok {
		return IKESuite{}, fmt.Errorf("ikecrypto: ESN transform in an IKE proposal")
	}
	prf, ok := m[wire.TransformPRF]
	if !ok {
		return IKESuite{}, fmt.Errorf("ikecrypto: IKE proposal has no PRF transform")
	}
	dh, ok := m[wire.TransformDH]
	if !ok || dh.ID == wire.DH_NONE {
		return IKESuite{}, fmt.Errorf("ikecrypto: IKE proposal has no key exchange transform")
	}
	out := IKESuite{Encr: enc.id, EncrKeyBits: enc.keyBits, Integ: integ, PRF: prf.ID, DH: dh.ID}
	for i := range out.AddKE {
		out.AddKE[i] = m[wire.TransformADDKE1+wire.TransformType(i)].ID
	}
	return out, nil
}

// ESPSuiteFromProposal reads the suite of a selected ESP proposal: exactly one ENCR,
// one INTEG unless ENCR is an AEAD, at most one DH (PFS; DH_NONE means none), at
// most one ESN (absent means no ESN) and at most one of each ADDKEn (RFC 9370; only
// with a DH). A PRF transform is an error.
func ESPSuiteFromProposal(p wire.Proposal) (ESPSuite, error) {
	if p.Protocol != wire.ProtoESP {
		return ESPSuite{}, fmt.Errorf("ikecrypto: proposal protocol is %d, not ESP", p.Protocol)
	}
	m, err := suiteTransforms(p)
	if err != nil {
		return ESPSuite{}, err
	}
	enc, integ, err := encrAndInteg(m)
	if err != nil {
		return ESPSuite{}, err
	}
	if _, ok := m[wire.TransformPRF]; ok {
		return ESPSuite{}, fmt.Errorf("ikecrypto: PRF transform in an ESP proposal")
	}
	s := ESPSuite{Encr: enc.id, EncrKeyBits: enc.keyBits, Integ: integ}
	if dh, ok := m[wire.TransformDH]; ok {
		s.DH = dh.ID
	}
	for i := range s.AddKE {
		s.AddKE[i] = m[wire.TransformADDKE1+wire.TransformType(i)].ID
	}
	if s.DH == wire.DH_NONE && s.AddKE != [7]uint16{} {
		// RFC 9370 2.2.4: the additional exchanges follow the KE of CREATE_CHILD_SA.
		return ESPSuite{}, fmt.Errorf("ikecrypto: ESP proposal with additional key exchanges but no key exchange method")
	}
	if esn, ok := m[wire.TransformESN]; ok {
		s.ESN = esn.ID == wire.ESN_YES
	}
	return s, nil
}

func suiteKeyLengths(encr, keyBits, integ uint16) (int, int, error) {
	enc := lookupEncr(encr, int(keyBits))
	if enc == nil {
		return 0, 0, fmt.Errorf("ikecrypto: unsupported encryption transform %d with key length %d", encr, keyBits)
	}
	if enc.aead {
		if integ != wire.AUTH_NONE {
			return 0, 0, fmt.Errorf("ikecrypto: integrity transform %d with AEAD %s", integ, enc.name)
		}
		return enc.keymatLen(), 0, nil
	}
	in := lookupInteg(integ)
	if in == nil {
		return 0, 0, fmt.Errorf("ikecrypto: unsupported integrity transform %d", integ)
	}
	return enc.keymatLen(), in.keyLen, nil
}

func (s IKESuite) keyLengths() (int, int, error) {
	return suiteKeyLengths(s.Encr, s.EncrKeyBits, s.Integ)
}

func (s ESPSuite) keyLengths() (int, int, error) {
	return suiteKeyLengths(s.Encr, s.EncrKeyBits, s.Integ)
}

// KeyLengths returns the octets of SK_ei/SK_er (including the AEAD salt or the AES-CTR
// nonce) and of SK_ai/SK_ar (0 with an AEAD). Both are 0 for a suite this package does not implement.
func (s IKESuite) KeyLengths() (encr, integ int) {
	encr, integ, err := s.keyLengths()
	if err != nil {
		return 0, 0
	}
	return encr, integ
}

// KeyLengths returns the octets of each direction's encryption key (including the
// salt of an AEAD, 4 octets or 3 for AES-CCM, or the 4-octet nonce of AES-CTR) and
// integrity key (0 with an AEAD). Both are 0 for a suite
// this package does not implement.
func (s ESPSuite) KeyLengths() (encr, integ int) {
	encr, integ, err := s.keyLengths()
	if err != nil {
		return 0, 0
	}
	return encr, integ
}

// IsAEAD reports whether the suite's encryption algorithm is an AEAD.
func (s IKESuite) IsAEAD() bool { return isAEAD(s.Encr, s.EncrKeyBits) }

// IsAEAD reports whether the suite's encryption algorithm is an AEAD.
func (s ESPSuite) IsAEAD() bool { return isAEAD(s.Encr, s.EncrKeyBits) }

func isAEAD(encr, keyBits uint16) bool {
	e := lookupEncr(encr, int(keyBits))
	return e != nil && e.aead
}

// String returns the strongSwan name of the suite, e.g. "aes128gcm16-prfsha256-x25519",
// "aes256-sha256-prfsha256-modp2048" or "aes128ctr-sha1-prfsha1-modp1024".
func (s IKESuite) String() string {
	parts := []string{encrName(s.Encr, s.EncrKeyBits)}
	if s.Integ != wire.AUTH_NONE {
		parts = append(parts, integName(s.Integ))
	}
	parts = append(parts, prfName(s.PRF), dhName(s.DH))
	return strings.Join(addKENames(parts, &s.AddKE), "-")
}

// String returns the strongSwan name of the suite, e.g. "aes128gcm16",
// "aes128-sha256", "aes128gcm16-x25519" (PFS), "aes256gcm16-esn" or
// "aes128gcm16-x25519-ke1_mlkem768" (PFS with an additional key exchange).
func (s ESPSuite) String() string {
	parts := []string{encrName(s.Encr, s.EncrKeyBits)}
	if s.Integ != wire.AUTH_NONE {
		parts = append(parts, integName(s.Integ))
	}
	if s.DH != wire.DH_NONE {
		parts = append(parts, dhName(s.DH))
	}
	if s.ESN {
		parts = append(parts, "esn")
	}
	return strings.Join(addKENames(parts, &s.AddKE), "-")
}

func encrName(id, keyBits uint16) string {
	if a := lookupEncr(id, int(keyBits)); a != nil {
		return a.name
	}
	if keyBits != 0 {
		return "ENCR_" + strconv.Itoa(int(id)) + "_" + strconv.Itoa(int(keyBits))
	}
	return "ENCR_" + strconv.Itoa(int(id))
}

func integName(id uint16) string {
	if a := lookupInteg(id); a != nil {
		return a.name
	}
	return "INTEG_" + strconv.Itoa(int(id))
}

func prfName(id uint16) string {
	if a := lookupPRF(id); a != nil {
		return a.name
	}
	return "PRF_" + strconv.Itoa(int(id))
}

// MethodName returns the strongSwan name of a key exchange method ("x25519",
// "mlkem768", "modp2048"; "KE_n" for one this package does not know).
func MethodName(id uint16) string { return dhName(id) }

func dhName(id uint16) string {
	if a := lookupDH(id); a != nil {
		return a.name
	}
	if id == wire.DH_NONE {
		return "none"
	}
	if id == wire.KE_MLKEM768 {
		return "mlkem768"
	}
	return "KE_" + strconv.Itoa(int(id))
}

func typeName(t wire.TransformType) string {
	switch t {
	case wire.TransformENCR:
		return "ENCR"
	case wire.TransformPRF:
		return "PRF"
	case wire.TransformINTEG:
		return "INTEG"
	case wire.TransformDH:
		return "KE"
	case wire.TransformESN:
		return "ESN"
	}
	if isAddKE(t) {
		return "ADDKE" + strconv.Itoa(int(t-wire.TransformADDKE1)+1)
	}
	return "TYPE_" + strconv.Itoa(int(t))
}

// transformName names a transform for error messages.
func transformName(t wire.Transform) string {
	switch t.Type {
	case wire.TransformENCR:
		return encrName(t.ID, t.KeyLength())
	case wire.TransformPRF:
		return prfName(t.ID)
	case wire.TransformINTEG:
		if t.ID == wire.AUTH_NONE {
			return "INTEG_NONE"
		}
		return integName(t.ID)
	case wire.TransformDH:
		return dhName(t.ID)
	case wire.TransformESN:
		if t.ID == wire.ESN_YES {
			return "esn"
		}
		if t.ID == wire.ESN_NO {
			return "noesn"
		}
		return "ESN_" + strconv.Itoa(int(t.ID))
	}
	if isAddKE(t.Type) {
		return "ke" + strconv.Itoa(int(t.Type-wire.TransformADDKE1)+1) + "_" + dhName(t.ID)
	}
	return typeName(t.Type) + "_" + strconv.Itoa(int(t.ID))
}

// ProposalString names every transform of a proposal, strongSwan style, for logs
// (e.g. "ESP:aes128gcm16/aes256gcm16/noesn").
func ProposalString(p wire.Proposal) string {
	var b strings.Builder
	b.WriteString(p.Protocol.String())
	for i, t := range p.Transforms {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte('/')
		}
		b.WriteString(transformName(t))
	}
	return b.String()
}

// ProposalsString names a list of proposals, separated by commas.
func ProposalsString(ps []wire.Proposal) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = ProposalString(p)
	}
	return strings.Join(names, ", ")
}
