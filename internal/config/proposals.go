package config

import (
	"fmt"
	"slices"
	"strings"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// proposalsKey reads a list of at least one proposal (strongSwan syntax), each
// validated with check; example is a list for the error when it is empty.
func proposalsKey(dst *[]string, check func(string) error, example string) reader {
	return func(p *parser, v val) error {
		items, err := p.list(v, true)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return p.verr(v, "needs at least one proposal, e.g. [default] or %s", example)
		}
		*dst = (*dst)[:0]
		for _, it := range items {
			if err := check(it.s); err != nil {
				return p.ierr(it, "%v", err)
			}
			*dst = append(*dst, it.s)
		}
		return nil
	}
}

// parseProposals parses validated proposal strings into the engine's proposals, in
// order (one string may give several: "default").
func parseProposals(ss []string, parse func(string) ([]wire.Proposal, error)) ([]wire.Proposal, error) {
	var out []wire.Proposal
	for _, s := range ss {
		ps, err := parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// legacyWarnings notes each proposal of props (as written, at key) that names legacy
// algorithms (crypto.LegacyAlgorithms): off by default, allowed because named.
func (p *parser) legacyWarnings(key string, props []string, parse func(string) ([]wire.Proposal, error)) {
	for i, s := range props {
		ps, err := parse(s)
		if err != nil {
			continue
		}
		var names []string
		for _, pr := range ps {
			for _, n := range ikecrypto.LegacyAlgorithms(pr) {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
		if len(names) > 0 {
			p.warnings = append(p.warnings, fmt.Sprintf("%s[%d]: %q uses legacy algorithms (%s), weaker than the defaults and "+
				"not offered unless named; use them only for peers that support nothing better", key, i, s, strings.Join(names, ", ")))
		}
	}
}

// checkIKEProposal and checkESPProposal validate one proposal string with the crypto
// package's parsers, reworded to stand on their own in a config error.
func checkIKEProposal(s string) error {
	_, err := ikecrypto.ParseIKEProposal(s)
	return proposalErr(s, err, "e.g. aes128gcm16-prfsha256-x25519, aes256-sha256-ecp256 or default")
}

func checkESPProposal(s string) error {
	_, err := ikecrypto.ParseESPProposal(s)
	return proposalErr(s, err, "e.g. aes128gcm16, chacha20poly1305, aes128-sha256-x25519 or default")
}

func proposalErr(s string, err error, examples string) error {
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "ikecrypto: ")
	msg = strings.TrimPrefix(msg, fmt.Sprintf("proposal %q: ", s))
	if !strings.Contains(msg, s) {
		msg = fmt.Sprintf("proposal %q: %s", s, msg)
	}
	return fmt.Errorf("%s (strongSwan proposal syntax, %s)", msg, examples)
}
