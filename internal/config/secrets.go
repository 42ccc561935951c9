package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"strings"
)

func (p *parser) secrets(v val, dst *[]Secret) error {
	elems, err := p.seq(v, "of secrets, each with ids and psk or psk_file")
	if err != nil {
		return err
	}
	out := make([]Secret, 0, len(elems))
	for _, e := range elems {
		s, err := p.secret(e)
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	*dst = out
	return nil
}

// secret reads one entry of secrets: a pre-shared key (type psk, the default), or an
// EAP password (type eap, with secret).
func (p *parser) secret(e val) (Secret, error) {
	var s Secret
	o, err := p.object(e, "type, ids, psk, psk_file or secret", "type", "ids", "psk", "psk_file", "secret")
	if err != nil {
		return s, err
	}
	typ := "psk"
	if v, ok := o.get("type"); ok {
		if typ, err = p.oneOf(v, "psk", "eap"); err != nil {
			return s, err
		}
	}
	if v, ok := o.get("ids"); ok {
		items, err := p.list(v, false)
		if err != nil {
			return s, err
		}
		for _, it := range items {
			s.IDs = append(s.IDs, it.s)
		}
	}
	if typ == "eap" {
		return s, p.eapSecret(o, e, &s)
	}
	if o.has("secret") {
		return s, p.kerr(o, "secret", "only used with type: eap; a pre-shared key is psk or psk_file")
	}
	vp, hasPSK := o.get("psk")
	vf, hasFile := o.get("psk_file")
	switch {
	case hasPSK && hasFile:
		return s, p.errf(o.keyLine("psk_file"), vf.path, "give either psk or psk_file, not both")
	case !hasPSK && !hasFile:
		return s, p.verr(e, "missing psk or psk_file")
	case hasPSK:
		str, err := p.scalar(vp, "a string")
		if err != nil {
			return s, err
		}
		if s.PSK, err = decodeSecret(str); err != nil {
			return s, p.verr(vp, "%v", err)
		}
	default:
		if s.PSK, err = p.pskFile(vf); err != nil {
			return s, err
		}
	}
	return s, nil
}

// eapSecret reads the password of a secret of type eap (entry e, mapping o).
func (p *parser) eapSecret(o *obj, e val, s *Secret) error {
	for _, k := range []string{"psk", "psk_file"} {
		if o.has(k) {
			return p.kerr(o, k, "not used with type: eap; the EAP password is secret")
		}
	}
	v, ok := o.get("secret")
	if !ok {
		return p.verr(e, "missing secret: the EAP password of the ids")
	}
	str, err := p.scalar(v, "a string")
	if err != nil {
		return err
	}
	if s.EAP, err = decodeSecret(str); err != nil {
		return p.verr(v, "%v", strings.Replace(err.Error(), "a pre-shared key", "an EAP password", 1))
	}
	return nil
}

// pskFile reads a psk_file: the key is the file's content without trailing line ends.
func (p *parser) pskFile(v val) ([]byte, error) {
	name, err := p.str(v)
	if err != nil {
		return nil, err
	}
	abs := p.path(name)
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, p.verr(v, "%s: %v", abs, unwrapPathError(err))
	}
	psk := bytes.TrimRight(data, "\r\n")
	if len(psk) == 0 {
		return nil, p.verr(v, "%s is empty; a pre-shared key must not be empty", abs)
	}
	return psk, nil
}

// decodeSecret decodes a psk as strongSwan does: "0x..." is hex, "0s..." base64,
// anything else the literal bytes.
func decodeSecret(s string) ([]byte, error) {
	var b []byte
	switch {
	case strings.HasPrefix(s, "0x"):
		var err error
		if b, err = hex.DecodeString(s[2:]); err != nil {
			return nil, errors.New("starts with 0x but is not hex; write the key as hex after 0x, or quote a text key that does not start with 0x")
		}
	case strings.HasPrefix(s, "0s"):
		var err error
		if b, err = base64.StdEncoding.DecodeString(s[2:]); err != nil {
			return nil, errors.New("starts with 0s but is not base64; write the key as base64 after 0s, or use a text key that does not start with 0s")
		}
	default:
		b = []byte(s)
	}
	if len(b) == 0 {
		return nil, errors.New("a pre-shared key must not be empty")
	}
	return b, nil
}
