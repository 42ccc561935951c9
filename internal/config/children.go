package config

import (
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/ike"
)

func (p *parser) children(v val, dst *[]*Child) error {
	fs, err := p.entries(v, "child names to their settings", 0)
	if err != nil {
		return err
	}
	var out []*Child
	for _, f := range fs {
		ch, err := p.child(f)
		if err != nil {
			return err
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return p.verr(v, "no children; define at least one")
	}
	*dst = out
	return nil
}

// child reads one entry of a connection's children (null: all defaults).
func (p *parser) child(f field) (*Child, error) {
	if !validName(f.key) {
		return nil, p.errf(f.keyLine, f.v.path, "%q is not a valid child name; use 1..64 letters, digits, '.', '_' or '-'", f.key)
	}
	ch := &Child{
		Name:         f.key,
		LocalTS:      []ike.TSConfig{dynamicTS},
		RemoteTS:     []ike.TSConfig{dynamicTS},
		ESPProposals: []string{"default"},
		RekeyTime:    DefaultChildRekeyTime,
	}
	if !isNull(f.v.n) {
		o, err := p.object(f.v, "local_ts, remote_ts, esp_proposals, rekey_time, rekey_bytes, life_bytes, rekey_packets, life_packets",
			"local_ts", "remote_ts", "esp_proposals", "rekey_time", "rekey_bytes", "life_bytes", "rekey_packets", "life_packets")
		if err != nil {
			return nil, err
		}
		err = p.apply(o, []setting{
			{key: "local_ts", read: into((*parser).tsList, &ch.LocalTS)},
			{key: "remote_ts", read: into((*parser).tsList, &ch.RemoteTS)},
			{key: "esp_proposals", read: proposalsKey(&ch.ESPProposals, checkESPProposal, "[aes128gcm16]")},
			{key: "rekey_time", read: durationKey(&ch.RekeyTime)},
			{check: func() error { return p.childVolumes(o, ch) }},
		})
		if err != nil {
			return nil, err
		}
	}
	var err error
	if ch.ParsedESP, err = parseProposals(ch.ESPProposals, ikecrypto.ParseESPProposal); err != nil {
		return nil, p.errf(f.keyLine, joinPath(f.v.path, "esp_proposals"), "%v", err)
	}
	p.legacyWarnings(joinPath(f.v.path, "esp_proposals"), ch.ESPProposals, ikecrypto.ParseESPProposal)
	return ch, nil
}

// tsList reads a list of at least one traffic selector.
func (p *parser) tsList(v val, dst *[]ike.TSConfig) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return p.verr(v, "needs at least one traffic selector, e.g. [dynamic] or [198.18.0.0/16]")
	}
	out := make([]ike.TSConfig, 0, len(items))
	for _, it := range items {
		t, err := ParseTS(it.s)
		if err != nil {
			return p.ierr(it, "%v", err)
		}
		out = append(out, t)
	}
	*dst = out
	return nil
}
