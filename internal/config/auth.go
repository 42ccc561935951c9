package config

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mobikevpn/mobikevpn/cert"
)

// auth reads what the local and the remote block share: auth (one of methods,
// required) into method and id with readID; then, with psk (or eap-mschapv2,
// eap-radius), the settings psk and a check that none of pubkey's keys is given,
// with pubkey (or eap-tls), the settings pubkey.
func (p *parser) auth(o *obj, method *string, methods []string, readID reader, psk, pubkey []setting) error {
	err := p.apply(o, []setting{
		{key: "auth", need: "missing; use " + strings.Join(methods, ", "), read: enumKey(method, methods...)},
		{key: "id", read: readID},
	})
	if err != nil {
		return err
	}
	if *method == AuthPubkey || *method == AuthEAPTLS {
		return p.apply(o, pubkey)
	}
	if err := p.apply(o, psk); err != nil {
		return err
	}
	for _, s := range pubkey {
		if s.check == nil && o.has(s.key) {
			return p.kerr(o, s.key, "only used with auth: pubkey or eap-tls")
		}
	}
	return nil
}

// localAuth parses the local block of connection c.
func (p *parser) localAuth(v val, a *LocalAuth, c *Connection, cfg *Config) error {
	o, err := p.object(v, "auth, id, eap_id, certs, key, rsa_pss", "auth", "id", "eap_id", "certs", "key", "rsa_pss")
	if err != nil {
		return err
	}
	readID := func(p *parser, v val) error {
		if err := stringKey(&a.ID)(p, v); err != nil {
			return err
		}
		if a.ID == AnyID {
			return p.verr(v, "the local identity must be concrete, not %%any")
		}
		return nil
	}
	psk := []setting{
		{check: func() error {
			if a.Auth == AuthPSK && !o.has("id") {
				return p.kerr(o, "id", "missing; psk authentication needs our identity, e.g. id: alice@example.org")
			}
			return nil
		}},
	}
	pubkey := []setting{
		{key: "certs", need: "missing; " + a.Auth + " authentication needs our certificate, e.g. certs: [gw.pem]",
			read: fileListKey(&a.Certs, "needs at least one certificate file")},
		{key: "key", need: "missing; " + a.Auth + " authentication needs our private key, e.g. key: gw.key", read: func(p *parser, v val) (err error) {
			if err := fileKey(&a.Key)(p, v); err != nil {
				return err
			}
			if a.Cred, err = cert.LoadCredential(a.Certs, a.Key); err != nil {
				return p.verr(v, "%v", err)
			}
			return nil
		}},
		{key: "rsa_pss", read: func(p *parser, v val) error { return boolKey(&a.Cred.RSAPSS)(p, v) }},
	}
	methods := []string{AuthPSK, AuthPubkey, AuthEAPMSCHAPv2, AuthEAPTLS}
	if err := p.auth(o, &a.Auth, methods, readID, psk, pubkey); err != nil {
		return err
	}
	return p.localEAP(o, a, c, cfg)
}

// localEAP checks a client's EAP settings in local block o: eap_id, and the
// password of eap-mschapv2 in secrets.
func (p *parser) localEAP(o *obj, a *LocalAuth, c *Connection, cfg *Config) error {
	eap := a.Auth == AuthEAPMSCHAPv2 || a.Auth == AuthEAPTLS
	if v, ok := o.get("eap_id"); ok {
		if !eap {
			return p.kerr(o, "eap_id", "only used with auth: eap-mschapv2 or eap-tls")
		}
		if err := stringKey(&a.EAPID)(p, v); err != nil {
			return err
		}
		if len(a.EAPID) > 253 || a.EAPID == AnyID {
			return p.verr(v, "an EAP identity must be a concrete name of at most 253 bytes")
		}
	}
	if !eap {
		return nil
	}
	if !c.Initiator {
		return p.kerr(o, "auth", "%s: only a client (with remote_addrs) authenticates itself with EAP; a gateway proves itself with pubkey (or psk) and asks its clients for EAP with remote: { auth: %s }", a.Auth, a.Auth)
	}
	id := a.EAPID
	if id == "" {
		id = a.ID
	}
	if id == "" && a.Auth == AuthEAPMSCHAPv2 {
		return p.kerr(o, "eap_id", "missing; eap-mschapv2 needs our user name, e.g. eap_id: alice")
	}
	if a.Auth == AuthEAPMSCHAPv2 {
		if _, ok := cfg.EAPSecret(id); !ok {
			return p.kerr(o, "auth", "eap-mschapv2 for %q, but no entry in secrets of type eap has that id; add { type: eap, ids: [%s], secret: \"...\" }", id, id)
		}
	}
	return nil
}

// remoteAuth parses the remote block of connection c (whose remote_addrs are parsed).
func (p *parser) remoteAuth(v val, a *RemoteAuth, c *Connection, cfg *Config) error {
	o, err := p.object(v, "auth, id, cacerts, accept_any_id, eku, crls, eap_only", "auth", "id", "cacerts", "accept_any_id", "eku", "crls", "eap_only")
	if err != nil {
		return err
	}
	a.ID = AnyID
	pubkey := []setting{
		{key: "cacerts", need: "missing; pubkey authentication of the peer needs the CA certificate(s) to trust, e.g. cacerts: [ca.pem]", read: func(p *parser, v val) (err error) {
			if err := fileListKey(&a.CACerts, "needs at least one CA certificate file")(p, v); err != nil {
				return err
			}
			if a.CAs, err = cert.LoadCAs(a.CACerts); err != nil {
				return p.verr(v, "%v", err)
			}
			return nil
		}},
		{key: "accept_any_id", read: func(p *parser, v val) error {
			if err := boolKey(&a.AcceptAnyID)(p, v); err != nil {
				return err
			}
			if a.ID != AnyID {
				return p.verr(v, "only applies with id: \"%%any\" (or no id); this connection names its peer (id: %s)", a.ID)
			}
			return nil
		}},
		{check: func() error { return p.anyGateway(o, a, c) }},
		{key: "eku", read: into((*parser).eku, a)},
		{key: "crls", read: into((*parser).crls, a)},
	}
	methods := []string{AuthPSK, AuthPubkey, AuthEAPMSCHAPv2, AuthEAPTLS, AuthEAPRadius}
	if err := p.auth(o, &a.Auth, methods, stringKey(&a.ID), nil, pubkey); err != nil {
		return err
	}
	return p.remoteEAP(o, a, c, cfg)
}

// remoteEAP checks a gateway's EAP methods in remote block o: only a gateway asks
// for EAP, which needs a radius section with eap-radius, and proves itself with
// pubkey or psk.
func (p *parser) remoteEAP(o *obj, a *RemoteAuth, c *Connection, cfg *Config) error {
	if v, ok := o.get("eap_only"); ok {
		if err := boolKey(&a.EAPOnly)(p, v); err != nil {
			return err
		}
		if c.Initiator && c.Local.Auth != AuthEAPTLS {
			return p.verr(v, "EAP-only authentication of the gateway (RFC 5998) needs local: { auth: eap-tls }: only EAP-TLS proves the gateway")
		}
		if !c.Initiator && a.Auth != AuthEAPTLS {
			return p.verr(v, "EAP-only authentication (RFC 5998) is offered with auth: eap-tls only: its TLS certificate proves the gateway")
		}
	}
	if a.Auth != AuthEAPMSCHAPv2 && a.Auth != AuthEAPTLS && a.Auth != AuthEAPRadius {
		return nil
	}
	if c.Initiator {
		return p.kerr(o, "auth", "%s: a client authenticates its gateway with pubkey or psk (EAP-only authentication of the gateway, RFC 5998, is not supported); the gateway's clients use EAP with local: { auth: %s }", a.Auth, a.Auth)
	}
	if a.Auth == AuthEAPTLS && c.Local.Auth != AuthPubkey {
		return p.kerr(o, "auth", "eap-tls: the gateway's TLS certificate is its local one; use local: { auth: pubkey, certs: [...], key: ... }")
	}
	if a.Auth == AuthEAPRadius && cfg.Radius == nil {
		return p.kerr(o, "auth", "eap-radius needs the RADIUS servers: add a top-level radius: { servers: [{ addr: 198.18.0.5:1812, secret: \"...\" }] }")
	}
	return nil
}

// anyGateway refuses id: "%any" in the remote block (o) of a client authenticating its
// gateway by certificate, unless accept_any_id says so. Issue 11: a client that takes
// any certificate of its CAs as the gateway can be fooled by anyone holding one (any
// other client of the same CA).
func (p *parser) anyGateway(o *obj, a *RemoteAuth, c *Connection) error {
	iv, hasID := o.get("id")
	if c.Initiator && hasID && a.ID == AnyID && !a.AcceptAnyID {
		return p.verr(iv, "\"%%any\" on a client (remote_addrs %s) would accept any certificate issued by the CAs in cacerts as the gateway: "+
			"anyone holding one (another client, too) could pose as the gateway and see the traffic. Name the gateway's identity "+
			"(e.g. id: gw.example.org, or its certificate's subject DN), or leave id out to expect the gateway's address in its "+
			"certificate (an IP subjectAltName); to accept any certificate of these CAs all the same, add accept_any_id: true",
			addrList(c.RemoteAddrs))
	}
	return nil
}

// eku reads the extended key usages of which the peer's certificate must carry one.
func (p *parser) eku(v val, a *RemoteAuth) error {
	items, err := p.list(v, true)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return p.verr(v, "needs at least one extended key usage (e.g. [serverAuth, ipsecIKE]); leave eku out not to check them")
	}
	for _, it := range items {
		oid, err := cert.ParseEKU(it.s)
		if err != nil {
			return p.ierr(it, "%v", err)
		}
		for _, have := range a.EKUOIDs {
			if have.Equal(oid) {
				return p.ierr(it, "%s is listed twice", it.s)
			}
		}
		a.EKU = append(a.EKU, it.s)
		a.EKUOIDs = append(a.EKUOIDs, oid)
	}
	return nil
}

// crls reads the CRL files, each of which is loaded and checked against the CAs as it
// is listed.
func (p *parser) crls(v val, a *RemoteAuth) error {
	items, err := p.list(v, false)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return p.verr(v, "needs at least one CRL file; leave crls out not to check revocation")
	}
	for _, it := range items {
		f, err := p.file(it)
		if err != nil {
			return err
		}
		crls, err := cert.LoadCRLs([]string{f})
		if err != nil {
			return p.ierr(it, "%v", err)
		}
		if err := crlsFitCAs(crls, a.CAs); err != nil {
			return p.ierr(it, "%v", err)
		}
		a.CRLFiles = append(a.CRLFiles, f)
		a.CRLs = append(a.CRLs, crls...)
	}
	return nil
}

// crlsFitCAs checks that each CRL issued in the name of one of the trusted CAs verifies
// with that CA's key. CRLs of other issuers may be those of intermediate CAs, which
// peers send: they are checked when used.
func crlsFitCAs(crls []*x509.RevocationList, cas []*x509.Certificate) error {
	for _, crl := range crls {
		var named []*x509.Certificate
		for _, ca := range cas {
			if bytes.Equal(crl.RawIssuer, ca.RawSubject) {
				named = append(named, ca)
			}
		}
		if len(named) == 0 {
			continue
		}
		var err error
		for _, ca := range named {
			if err = crl.CheckSignatureFrom(ca); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("the CRL of %q does not verify with that CA's certificate in cacerts: %v", crl.Issuer.String(), err)
		}
	}
	return nil
}

func addrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}
