package crypto

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mobikevpn/mobikevpn/wire"
)

// Default proposal strings, expanded from the keyword "default". The AEAD proposal
// comes first; without an explicit PRF the classic IKE proposal gets the PRFs that
// match its integrity algorithms.
const (
	defaultIKEAEAD    = "aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp3072-modp2048"
	defaultIKEClassic = "aes256-aes128-sha256-sha384-sha512-x25519-ecp256-ecp384-modp3072-modp2048"
	defaultESPAEAD    = "aes128gcm16-aes256gcm16-chacha20poly1305"
	defaultESPClassic = "aes128-aes256-sha256"
)

// keyword is one proposal token: a transform type and ID plus the key length.
type keyword struct {
	typ     wire.TransformType
	id      uint16
	keyBits uint16
}

// icvAliases are strongSwan's names of the AES-GCM and AES-CCM ICV lengths in bits,
// and the ones without a length, which mean 16 octets.
var icvAliases = map[string]string{"": "16", "64": "8", "96": "12", "128": "16"}

// lookupKeyword resolves a strongSwan proposal keyword (lower case) against the
// algorithm table, including strongSwan's aliases.
func lookupKeyword(name string) (keyword, bool) {
	for _, mode := range []string{"gcm", "ccm"} { // aes128gcm, aes256ccm64, ...
		for _, bits := range []string{"128", "192", "256"} {
			if rest, ok := strings.CutPrefix(name, "aes"+bits+mode); ok {
				if octets, ok := icvAliases[rest]; ok {
					name = "aes" + bits + mode + octets
				}
			}
		}
	}
	switch name { // strongSwan aliases
	case "aes":
		name = "aes128"
	case "sha":
		name = "sha1"
	case "sha2_256":
		name = "sha256"
	case "sha2_384":
		name = "sha384"
	case "sha2_512":
		name = "sha512"
	case "curve25519":
		name = "x25519"
	case "none", "modpnone":
		return keyword{typ: wire.TransformDH, id: wire.DH_NONE}, true
	case "esn":
		return keyword{typ: wire.TransformESN, id: wire.ESN_YES}, true
	case "noesn":
		return keyword{typ: wire.TransformESN, id: wire.ESN_NO}, true
	}
	for i := range encrAlgs {
		if encrAlgs[i].name == name {
			return keyword{typ: wire.TransformENCR, id: encrAlgs[i].id, keyBits: encrAlgs[i].keyBits}, true
		}
	}
	for i := range integAlgs {
		if integAlgs[i].name == name {
			return keyword{typ: wire.TransformINTEG, id: integAlgs[i].id}, true
		}
	}
	for i := range prfAlgs {
		if prfAlgs[i].name == name {
			return keyword{typ: wire.TransformPRF, id: prfAlgs[i].id}, true
		}
	}
	for i := range dhAlgs {
		if dhAlgs[i].name == name {
			return keyword{typ: wire.TransformDH, id: dhAlgs[i].id}, true
		}
	}
	return keyword{}, false
}

func (k keyword) transform() wire.Transform {
	if k.typ == wire.TransformENCR {
		return lookupEncr(k.id, int(k.keyBits)).transform()
	}
	return wire.Transform{Type: k.typ, ID: k.id}
}

// ParseIKEProposal parses a strongSwan IKE proposal string such as
// "aes128gcm16-prfsha256-x25519" or "default" into proposals numbered from 1, in
// preference order. Several proposal strings may be joined with commas. A string that
// mixes AEAD and classic ciphers yields two proposals, the AEAD one first. Without an
// explicit PRF the PRFs matching the integrity algorithms are used.
func ParseIKEProposal(s string) ([]wire.Proposal, error) {
	return parseProposals(wire.ProtoIKE, s)
}

// ParseESPProposal parses a strongSwan ESP proposal string such as "aes128gcm16",
// "aes128-sha256-x25519-esn-noesn" or "default" into proposals numbered from 1.
// Without esn/noesn only "no ESN" is offered; a key exchange method asks for PFS, and
// "none" next to one makes PFS optional. Additional key exchanges ("ke1_mlkem768",
// RFC 9370, run in IKE_FOLLOWUP_KE) need a key exchange method and no "none".
func ParseESPProposal(s string) ([]wire.Proposal, error) {
	return parseProposals(wire.ProtoESP, s)
}

func parseProposals(proto wire.ProtocolID, s string) ([]wire.Proposal, error) {
	var out []wire.Proposal
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("ikecrypto: empty proposal in %q", s)
		}
		ps, err := parseOne(proto, part)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	if len(out) > 255 {
		return nil, fmt.Errorf("ikecrypto: %d proposals, at most 255 fit in an SA payload", len(out))
	}
	for i := range out {
		out[i].Num = uint8(i + 1)
	}
	return out, nil
}

func parseOne(proto wire.ProtocolID, s string) ([]wire.Proposal, error) {
	if strings.EqualFold(s, "default") {
		if proto == wire.ProtoIKE {
			return parseDefault(proto, defaultIKEAEAD, defaultIKEClassic)
		}
		return parseDefault(proto, defaultESPAEAD, defaultESPClassic)
	}
	fail := func(format string, args ...any) ([]wire.Proposal, error) {
		return nil, fmt.Errorf("ikecrypto: proposal %q: %s", s, fmt.Sprintf(format, args...))
	}
	var aead, classic, integ, prf, dh, esn []keyword
	var addke [7][]keyword
	for _, tok := range strings.Split(s, "-") {
		name := strings.ToLower(strings.TrimSpace(tok))
		if name == "" {
			return fail("empty algorithm name")
		}
		if name == "default" {
			return fail(`"default" must stand alone`)
		}
		if n, ke, ok, msg := addKEToken(name, tok); ok {
			if msg != "" {
				return fail("%s", msg)
			}
			addke[n] = appendUnique(addke[n], ke)
			continue
		}
		k, ok := lookupKeyword(name)
		if !ok {
			return fail("unknown algorithm %q", tok)
		}
		switch k.typ {
		case wire.TransformENCR:
			if lookupEncr(k.id, int(k.keyBits)).aead {
				aead = appendUnique(aead, k)
			} else {
				classic = appendUnique(classic, k)
			}
		case wire.TransformINTEG:
			integ = appendUnique(integ, k)
		case wire.TransformPRF:
			if proto != wire.ProtoIKE {
				return fail("%q is not allowed in an ESP proposal", tok)
			}
			prf = appendUnique(prf, k)
		case wire.TransformDH:
			if k.id == wire.DH_NONE && proto == wire.ProtoIKE {
				return fail("%q is not allowed in an IKE proposal", tok)
			}
			dh = appendUnique(dh, k)
		case wire.TransformESN:
			if proto == wire.ProtoIKE {
				return fail("%q is not allowed in an IKE proposal", tok)
			}
			esn = appendUnique(esn, k)
		}
	}
	if len(aead) == 0 && len(classic) == 0 {
		return fail("no encryption algorithm")
	}
	if len(classic) > 0 && len(integ) == 0 {
		return fail("%s needs an integrity algorithm (sha256, sha384 or sha512)", encrName(classic[0].id, classic[0].keyBits))
	}
	if msg := completeKeywords(proto, integ, &prf, dh, &esn, &addke); msg != "" {
		return fail("%s", msg)
	}
	if len(dh) == 1 && dh[0].id == wire.DH_NONE {
		dh = nil // "none" alone: no PFS, the same as no key exchange method
	}
	build := func(encr, integ []keyword) wire.Proposal {
		p := wire.Proposal{Protocol: proto}
		for _, list := range append([][]keyword{encr, prf, integ, dh, esn}, addke[:]...) {
			for _, k := range list {
				p.Transforms = append(p.Transforms, k.transform())
			}
		}
		return p
	}
	var out []wire.Proposal
	if len(aead) > 0 {
		out = append(out, build(aead, nil)) // AEAD: no integrity transform (RFC 5282)
	}
	if len(classic) > 0 {
		out = append(out, build(classic, integ))
	}
	return out, nil
}

func parseDefault(proto wire.ProtocolID, list ...string) ([]wire.Proposal, error) {
	var out []wire.Proposal
	for _, s := range list {
		ps, err := parseOne(proto, s)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// addKEKeyword recognises strongSwan's additional key exchange keywords (RFC 9370):
// "ke1_mlkem768" to "ke7_..." with a key exchange method, ML-KEM-768 or a DH group,
// or "none" (the additional exchange is optional). n is 0 for ADDKE1. A keyN_ prefix
// with an unknown method gives ok with a zero keyword.
func addKEKeyword(name string) (n int, k keyword, ok bool) {
	if len(name) < 5 || name[:2] != "ke" || name[2] < '1' || name[2] > '7' || name[3] != '_' {
		return 0, keyword{}, false
	}
	n = int(name[2] - '1')
	typ := wire.TransformADDKE1 + wire.TransformType(n)
	switch method := name[4:]; method {
	case "none":
		return n, keyword{typ: typ, id: 0}, true
	case "mlkem768":
		return n, keyword{typ: typ, id: wire.KE_MLKEM768}, true
	default:
		if d, found := lookupKeyword(method); found && d.typ == wire.TransformDH && d.id != wire.DH_NONE {
			return n, keyword{typ: typ, id: d.id}, true
		}
	}
	return n, keyword{}, true
}

// addKEToken handles an additional key exchange token of a proposal (IKE or ESP): ok
// when name is one (or a misplaced ML-KEM name), msg the error to report.
func addKEToken(name, tok string) (n int, k keyword, ok bool, msg string) {
	if name == "mlkem768" {
		return 0, keyword{}, true, fmt.Sprintf("%q is only allowed as an additional key exchange (ke1_mlkem768)", tok)
	}
	n, k, ok = addKEKeyword(name)
	switch {
	case !ok:
	case k.typ == 0:
		msg = fmt.Sprintf("unknown additional key exchange method %q", tok)
	}
	return n, k, ok, msg
}

// completeKeywords adds what a proto proposal implies (an IKE proposal's PRFs from its
// integrity algorithms, as strongSwan; an ESP proposal's "no ESN") and checks the key
// exchange methods; it returns the problem, "" for none.
func completeKeywords(proto wire.ProtocolID, integ []keyword, prf *[]keyword, dh []keyword, esn *[]keyword, addke *[7][]keyword) string {
	if proto != wire.ProtoIKE {
		if len(*esn) == 0 {
			*esn = []keyword{{typ: wire.TransformESN, id: wire.ESN_NO}}
		}
		return espAddKEGroups(dh, addke)
	}
	if len(*prf) == 0 {
		for _, k := range integ {
			*prf = appendUnique(*prf, keyword{typ: wire.TransformPRF, id: lookupInteg(k.id).prf})
		}
	}
	if len(*prf) == 0 {
		return "no PRF (prfsha256, prfsha384 or prfsha512)"
	}
	if len(dh) == 0 {
		return "no key exchange method"
	}
	return ""
}

// espAddKEGroups checks the key exchange methods of an ESP proposal with additional
// key exchanges (RFC 9370, run in IKE_FOLLOWUP_KE after CREATE_CHILD_SA): as in an IKE
// proposal they follow a key exchange method (PFS), which must not be optional ("none").
func espAddKEGroups(dh []keyword, addke *[7][]keyword) string {
	has := false
	for _, list := range addke {
		for _, k := range list {
			has = has || k.id != 0
		}
	}
	if !has {
		return ""
	}
	if len(dh) == 0 {
		return "additional key exchanges (ke1_...) need a key exchange method (PFS) before them, e.g. x25519"
	}
	for _, k := range dh {
		if k.id == wire.DH_NONE {
			return `"none" (optional PFS) is not allowed with additional key exchanges (ke1_...): they follow the key exchange method`
		}
	}
	return ""
}

// WithoutAddKE returns a copy of props without additional key exchange transforms
// (RFC 9370): how a responder reads the IKE_SA_INIT proposals of an initiator that did
// not send INTERMEDIATE_EXCHANGE_SUPPORTED.
func WithoutAddKE(props []wire.Proposal) []wire.Proposal {
	out := make([]wire.Proposal, len(props))
	for i, p := range props {
		q := p
		q.SPI = slices.Clone(p.SPI)
		q.Transforms = nil
		for _, t := range p.Transforms {
			if !isAddKE(t.Type) {
				q.Transforms = append(q.Transforms, cloneTransform(t))
			}
		}
		out[i] = q
	}
	return out
}

// HasAddKE reports whether any proposal has an additional key exchange transform
// other than NONE.
func HasAddKE(props []wire.Proposal) bool {
	for _, p := range props {
		for _, t := range p.Transforms {
			if isAddKE(t.Type) && t.ID != 0 {
				return true
			}
		}
	}
	return false
}

func isAddKE(t wire.TransformType) bool {
	return t >= wire.TransformADDKE1 && t <= wire.TransformADDKE7
}

func appendUnique(list []keyword, k keyword) []keyword {
	if slices.Contains(list, k) {
		return list
	}
	return append(list, k)
}

// sameTransform reports whether t, received from the peer, names the same algorithm
// as ours. A transform with an attribute other than a single TV Key Length does not
// match anything.
func sameTransform(ours, t *wire.Transform) bool {
	if ours.Type != t.Type || ours.ID != t.ID {
		return false
	}
	if len(t.Attrs) > 1 || len(t.Attrs) == 1 && (t.Attrs[0].Type != wire.AttrKeyLength || !t.Attrs[0].TV) {
		return false
	}
	return ours.KeyLength() == t.KeyLength()
}

// selectionTypes is the order of transform types in selected proposals.
var selectionTypes = [...]wire.TransformType{
	wire.TransformENCR, wire.TransformPRF, wire.TransformINTEG, wire.TransformDH, wire.TransformESN,
	wire.TransformADDKE1, wire.TransformADDKE1 + 1, wire.TransformADDKE1 + 2, wire.TransformADDKE1 + 3,
	wire.TransformADDKE1 + 4, wire.TransformADDKE1 + 5, wire.TransformADDKE7,
}

func knownType(t wire.TransformType) bool {
	return t >= wire.TransformENCR && t <= wire.TransformADDKE7
}

// SelectProposal chooses, as the responder, one proposal of the peer's (theirs) that
// ours accept. Our preference order wins (as strongSwan's default): our proposals are
// tried in order against each of the peer's, and for every transform type our first
// algorithm that the peer's proposal also offers is chosen. The result carries the
// peer proposal's number, protocol and SPI and one transform of each type (none for
// INTEG with an AEAD, none for DH when an ESP proposal settles on no PFS). Peer
// transforms with attributes we do not understand are ignored; peer proposals of
// another protocol, or with a transform type we do not know, are skipped.
func SelectProposal(ours, theirs []wire.Proposal) (wire.Proposal, bool) {
	for i := range ours {
		for j := range theirs {
			if theirs[j].Protocol != ours[i].Protocol {
				continue
			}
			if p, ok := selectFrom(&ours[i], &theirs[j]); ok {
				return p, true
			}
		}
	}
	return wire.Proposal{}, false
}

func selectFrom(o, t *wire.Proposal) (wire.Proposal, bool) {
	for i := range t.Transforms {
		if !knownType(t.Transforms[i].Type) {
			return wire.Proposal{}, false // RFC 7296 3.3.6: unacceptable proposal
		}
	}
	sel := wire.Proposal{Num: t.Num, Protocol: t.Protocol, SPI: slices.Clone(t.SPI)}
	aead := false
	for _, typ := range selectionTypes {
		if typ == wire.TransformINTEG && aead {
			continue
		}
		oursHas, theirsHas := hasType(o, typ), hasType(t, typ)
		if !oursHas && !theirsHas {
			continue
		}
		if isAddKE(typ) {
			// RFC 9370 2.2.1: a missing ADDKEn type means NONE for it.
			if !selectAddKE(&sel, o, t, typ) {
				return wire.Proposal{}, false
			}
			continue
		}
		optional := typ == wire.TransformDH && o.Protocol != wire.ProtoIKE
		if optional && (!oursHas && offersNone(t) || !theirsHas && offersNone(o)) {
			continue // PFS optional on one side and absent on the other
		}
		found := false
		for k := range o.Transforms {
			ot := &o.Transforms[k]
			if ot.Type != typ || !transformKnown(ot) {
				continue
			}
			if typ == wire.TransformDH && ot.ID == wire.DH_NONE && !optional {
				continue
			}
			if !slices.ContainsFunc(t.Transforms, func(x wire.Transform) bool { return sameTransform(ot, &x) }) {
				continue
			}
			found = true
			if typ == wire.TransformDH && ot.ID == wire.DH_NONE {
				break // both accept no PFS: no DH transform in the result
			}
			sel.Transforms = append(sel.Transforms, cloneTransform(*ot))
			if typ == wire.TransformENCR {
				aead = lookupEncr(ot.ID, int(ot.KeyLength())).aead
			}
			break
		}
		if !found {
			return wire.Proposal{}, false
		}
	}
	if !hasType(&sel, wire.TransformENCR) {
		return wire.Proposal{}, false
	}
	if !aead && !hasType(&sel, wire.TransformINTEG) && (sel.Protocol == wire.ProtoIKE || sel.Protocol == wire.ProtoESP) {
		return wire.Proposal{}, false
	}
	return sel, true
}

// selectAddKE chooses our first method of the additional key exchange typ that the
// peer's proposal also offers, NONE standing for an absent type; NONE chosen adds no
// transform to sel.
func selectAddKE(sel, o, t *wire.Proposal, typ wire.TransformType) bool {
	methods := func(p *wire.Proposal) []wire.Transform {
		var out []wire.Transform
		for _, x := range p.Transforms {
			if x.Type == typ && transformKnown(&x) {
				out = append(out, x)
			}
		}
		if !hasType(p, typ) {
			out = append(out, wire.Transform{Type: typ})
		}
		return out
	}
	theirs := methods(t)
	for _, ot := range methods(o) {
		if !slices.ContainsFunc(theirs, func(x wire.Transform) bool { return sameTransform(&ot, &x) }) {
			continue
		}
		if ot.ID != 0 {
			sel.Transforms = append(sel.Transforms, cloneTransform(ot))
		}
		return true
	}
	return false
}

func hasType(p *wire.Proposal, typ wire.TransformType) bool {
	return slices.ContainsFunc(p.Transforms, func(t wire.Transform) bool { return t.Type == typ })
}

func offersNone(p *wire.Proposal) bool {
	return slices.ContainsFunc(p.Transforms, func(t wire.Transform) bool {
		return t.Type == wire.TransformDH && t.ID == wire.DH_NONE && len(t.Attrs) == 0
	})
}

func cloneTransform(t wire.Transform) wire.Transform {
	t.Attrs = slices.Clone(t.Attrs)
	for i := range t.Attrs {
		t.Attrs[i].Data = slices.Clone(t.Attrs[i].Data)
	}
	return t
}

// CheckResponseProposal checks, as the initiator, the proposal the responder chose:
// it must carry the number and protocol of one of ours and exactly one transform of
// each type it has, each an algorithm we offered in that proposal; the mandatory types
// must be present (ENCR; INTEG unless AEAD; PRF and KE for IKE; ESN for ESP when we
// offered it; KE for ESP when we offered PFS without "none"). An INTEG of AUTH_NONE
// next to an AEAD is tolerated.
func CheckResponseProposal(offered []wire.Proposal, got wire.Proposal) error {
	idx := slices.IndexFunc(offered, func(p wire.Proposal) bool { return p.Num == got.Num })
	if idx < 0 {
		return fmt.Errorf("ikecrypto: response names proposal %d, which we did not offer", got.Num)
	}
	o := &offered[idx]
	if got.Protocol != o.Protocol {
		return fmt.Errorf("ikecrypto: response proposal %d has protocol %d, we offered %d", got.Num, got.Protocol, o.Protocol)
	}
	var seen [wire.TransformADDKE7 + 1]bool
	aead := false
	var integNone bool
	for i := range got.Transforms {
		t := &got.Transforms[i]
		if !knownType(t.Type) {
			return fmt.Errorf("ikecrypto: response has unknown transform type %d", t.Type)
		}
		if seen[t.Type] {
			return fmt.Errorf("ikecrypto: response has more than one %s transform", typeName(t.Type))
		}
		seen[t.Type] = true
		if t.Type == wire.TransformINTEG && t.ID == wire.AUTH_NONE && len(t.Attrs) == 0 && !hasType(o, wire.TransformINTEG) {
			integNone = true
			continue
		}
		if isAddKE(t.Type) && t.ID == 0 && len(t.Attrs) == 0 && !hasType(o, t.Type) {
			continue // NONE for a type we did not offer: the same as leaving it out
		}
		if !slices.ContainsFunc(o.Transforms, func(x wire.Transform) bool { return transformKnown(&x) && sameTransform(&x, t) }) {
			return fmt.Errorf("ikecrypto: response chose %s, which we did not offer in proposal %d", transformName(*t), got.Num)
		}
		if t.Type == wire.TransformENCR {
			aead = lookupEncr(t.ID, int(t.KeyLength())).aead
		}
	}
	if !seen[wire.TransformENCR] {
		return errors.New("ikecrypto: response proposal has no encryption transform")
	}
	if integNone && !aead {
		return errors.New("ikecrypto: response chose no integrity with a classic cipher")
	}
	if !aead && !seen[wire.TransformINTEG] {
		return errors.New("ikecrypto: response proposal has no integrity transform")
	}
	switch got.Protocol {
	case wire.ProtoIKE:
		if !seen[wire.TransformPRF] {
			return errors.New("ikecrypto: response proposal has no PRF transform")
		}
		if !seen[wire.TransformDH] {
			return errors.New("ikecrypto: response proposal has no key exchange transform")
		}
		if dh := findType(&got, wire.TransformDH); dh.ID == wire.DH_NONE {
			return errors.New("ikecrypto: response proposal has no key exchange method")
		}
	case wire.ProtoESP:
		if hasType(o, wire.TransformESN) && !seen[wire.TransformESN] {
			return errors.New("ikecrypto: response proposal has no ESN transform")
		}
		if hasType(o, wire.TransformDH) && !offersNone(o) && !seen[wire.TransformDH] {
			return errors.New("ikecrypto: response proposal dropped the PFS key exchange we require")
		}
	}
	for typ := wire.TransformADDKE1; typ <= wire.TransformADDKE7; typ++ {
		none := slices.ContainsFunc(o.Transforms, func(x wire.Transform) bool { return x.Type == typ && x.ID == 0 })
		if hasType(o, typ) && !none && !seen[typ] {
			return fmt.Errorf("ikecrypto: response proposal dropped the additional key exchange %s we require", typeName(typ))
		}
	}
	return nil
}

func findType(p *wire.Proposal, typ wire.TransformType) *wire.Transform {
	for i := range p.Transforms {
		if p.Transforms[i].Type == typ {
			return &p.Transforms[i]
		}
	}
	return nil
}

// PreferGroup returns a copy of props in which the key exchange method group, where a
// proposal offers it, comes first among its KE transforms. A responder uses it on its
// own proposals before SelectProposal so that the group of the initiator's KE payload
// is chosen when acceptable, saving an INVALID_KE_PAYLOAD round trip (as strongSwan).
func PreferGroup(props []wire.Proposal, group uint16) []wire.Proposal {
	out := make([]wire.Proposal, len(props))
	for i, p := range props {
		q := p
		q.SPI = slices.Clone(p.SPI)
		q.Transforms = make([]wire.Transform, 0, len(p.Transforms))
		for _, t := range p.Transforms {
			q.Transforms = append(q.Transforms, cloneTransform(t))
		}
		k := slices.IndexFunc(q.Transforms, func(t wire.Transform) bool { return t.Type == wire.TransformDH && t.ID == group })
		first := slices.IndexFunc(q.Transforms, func(t wire.Transform) bool { return t.Type == wire.TransformDH })
		if k > first && first >= 0 {
			t := q.Transforms[k]
			copy(q.Transforms[first+1:k+1], q.Transforms[first:k])
			q.Transforms[first] = t
		}
		out[i] = q
	}
	return out
}
