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

// secret reads one entry of secrets.
func (p *parser) secret(e val) (Secret, error) {
	var s Secret
	o, err := p.object(e, "ids, psk or psk_file", "ids", "psk", "psk_file")
	if err != nil {
		return s, err
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
