package ike

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mobikevpn/mobikevpn/cert"
	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Authentication methods of a connection's ends.
const (
	AuthPSK    = "psk"
	AuthPubkey = "pubkey"
	// EAP (eapauth.go): the client's end authenticates with EAP-MSCHAPv2 or EAP-TLS;
	// the gateway's remote end runs them, or passes EAP to RADIUS servers.
	AuthEAPMSCHAPv2 = "eap-mschapv2"
	AuthEAPTLS      = "eap-tls"
	AuthEAPRadius   = "eap-radius"
)

// IsEAP reports whether an end's authentication method is one of EAP's.
func IsEAP(auth string) bool {
	return auth == AuthEAPMSCHAPv2 || auth == AuthEAPTLS || auth == AuthEAPRadius
}

// signedOctets are what AUTH covers for the sender of msg1 (RFC 7296 2.15).
func (sa *IKESA) signedOctets(msg1, peerNonce, skp []byte, id *wire.ID) []byte {
	// RFC 9242 3.3.2: after IKE_INTERMEDIATE exchanges, IntAuth_i | IntAuth_r |
	// IKE_AUTH message ID follows.
	return append(ikecrypto.SignedOctets(sa.prf, msg1, peerNonce, skp, idBody(id)), sa.im.intAuth...)
}

// ourAuth returns our CERT payloads (with public keys) and our AUTH payload. msg1 is
// our IKE_SA_INIT message, peerNonce the peer's nonce, peerID who we think the peer is
// (for the PSK lookup).
func (e *Engine) ourAuth(sa *IKESA, msg1, peerNonce, skp []byte, peerID *wire.ID) ([]wire.Payload, error) {
	conn := sa.conn
	signed := sa.signedOctets(msg1, peerNonce, skp, &sa.localID)
	switch conn.LocalAuth {
	case AuthPSK:
		psk, ok := e.psk(&sa.localID, peerID)
		if !ok {
			return nil, fmt.Errorf("no PSK for %s - %s", sa.localID.String(), peerID.String())
		}
		defer clear(psk) // our copy: overwritten once used
		return []wire.Payload{&wire.Auth{Method: wire.AuthSharedKey, Data: ikecrypto.PSKAuth(sa.prf, psk, signed)}}, nil
	case AuthPubkey:
		if conn.LocalCred == nil {
			return nil, errors.New("no certificate and key configured")
		}
		var out []wire.Payload
		for _, c := range conn.LocalCred.Chain {
			out = append(out, &wire.Cert{Encoding: wire.CertX509Signature, Data: c.Raw})
		}
		method, data, err := conn.LocalCred.Sign(signed, sa.peerHashes)
		if err != nil {
			return nil, err
		}
		return append(out, &wire.Auth{Method: method, Data: data}), nil
	}
	return nil, fmt.Errorf("local authentication %q is not supported", conn.LocalAuth)
}

// checkPeerAuth verifies the peer's AUTH payload (and, with public keys, its certificate
// chain and that the certificate is the identity's) for conn. msg1 is the peer's
// IKE_SA_INIT message, ourNonce ours.
func (e *Engine) checkPeerAuth(sa *IKESA, conn *Conn, ps []wire.Payload, id *wire.ID, msg1, ourNonce, skp []byte) error {
	auth := wire.Find[*wire.Auth](ps)
	if auth == nil {
		return errors.New("no AUTH payload")
	}
	signed := sa.signedOctets(msg1, ourNonce, skp, id)
	switch conn.RemoteAuth {
	case AuthPSK:
		if auth.Method != wire.AuthSharedKey {
			return fmt.Errorf("the peer authenticates with %s, the connection wants a PSK", auth.Method.String())
		}
		local := localIdentity(conn, sa.local.Addr())
		psk, ok := e.psk(&local, id)
		if !ok {
			return fmt.Errorf("no PSK for %s - %s", local.String(), id.String())
		}
		defer clear(psk) // our copy: overwritten once used
		if !ikecrypto.AuthEqual(ikecrypto.PSKAuth(sa.prf, psk, signed), auth.Data) {
			return errors.New("AUTH payload does not verify")
		}
		return nil
	case AuthPubkey:
		if auth.Method == wire.AuthSharedKey {
			return errors.New("the peer authenticates with a PSK, the connection wants a certificate")
		}
		var ders [][]byte
		for _, p := range ps {
			if c, ok := p.(*wire.Cert); ok && c.Encoding == wire.CertX509Signature {
				ders = append(ders, c.Data)
			}
		}
		if len(ders) == 0 {
			return errors.New("the peer sent no certificate")
		}
		leaf, err := e.validatePeerChain(sa, conn, ders)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		if !cert.IDMatches(id, leaf) {
			return fmt.Errorf("identity %s is not in the certificate of %s", id.String(), subjectOf(leaf))
		}
		// The identity we expect must be in the peer's certificate too (a peer may
		// present its DN while we name it by a subjectAltName, or the reverse).
		if want, byAddr, ok := expectedPeerID(conn, sa.remote.Addr(), sa.host); ok && !cert.IDMatches(&want, leaf) {
			if sa.host != "" && want.IDType == wire.ID_FQDN {
				return fmt.Errorf("the certificate of %s does not carry the gateway's host name %s as a DNS subjectAltName", subjectOf(leaf), sa.host)
			}
			if byAddr {
				return fmt.Errorf("the certificate of %s does not carry the peer's address %s as an IP subjectAltName "+
					"(the connection names no remote id, so the peer's address is its identity)", subjectOf(leaf), want.String())
			}
			return fmt.Errorf("the peer is %s, not %s: its certificate (%s) does not hold %s", id.String(), conn.RemoteID, subjectOf(leaf), conn.RemoteID)
		}
		if err := cert.Verify(auth.Method, auth.Data, signed, leaf); err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		return nil
	}
	return fmt.Errorf("remote authentication %q is not supported", conn.RemoteAuth)
}

// validatePeerChain parses the peer's certificate chain (DER, leaf first) and
// validates it as conn requires (CAs, EKUs, CRLs) at the host's time; it returns the
// leaf. IKE certificates and EAP-TLS certificates go through it alike.
func (e *Engine) validatePeerChain(sa *IKESA, conn *Conn, ders [][]byte) (*x509.Certificate, error) {
	chain, err := cert.ParseCerts(ders)
	if err != nil {
		return nil, err
	}
	v := cert.Validator{Roots: conn.RemoteCAs, EKUs: conn.RemotePolicy.EKUs, CRLs: conn.RemotePolicy.CRLs,
		Warn: func(msg string) { e.log.Warn(msg, "conn", conn.Name, "sa", sa.id, "peer", sa.remote) }}
	return v.Validate(chain)
}

// subjectOf is a certificate's subject DN as identities are written.
func subjectOf(c *x509.Certificate) string {
	id := wire.ID{IDType: wire.ID_DER_ASN1_DN, Data: c.RawSubject}
	return id.String()
}

// expectedPeerID is the identity a connection expects of its peer at address peer: the
// configured remote id; with certificates and none configured (%any), on a connection
// with concrete remote addresses (a client), the peer's address (byAddr), unless the
// connection accepts any certificate of its CAs (RemotePolicy.AnyID). A connection that
// accepts any peer address (a gateway) expects no particular identity (ok false).
func expectedPeerID(conn *Conn, peer netip.Addr, host string) (id wire.ID, byAddr, ok bool) {
	if !anyID(conn.RemoteID) {
		return wire.IDFromString(conn.RemoteID), false, true
	}
	if conn.RemoteAuth == AuthPubkey && host != "" && !conn.RemotePolicy.AnyID {
		// Reached by a host name: the certificate must be for that name.
		return wire.ID{IDType: wire.ID_FQDN, Data: []byte(host)}, false, true
	}
	if conn.RemoteAuth == AuthPubkey && len(conn.RemoteAddrs) > 0 && !conn.RemotePolicy.AnyID && peer.IsValid() {
		return addrID(peer), true, true
	}
	return wire.ID{}, false, false
}

// authMethodFits reports whether an AUTH method can satisfy a connection's remote auth;
// m 0 is an IKE_AUTH request without AUTH, which asks for EAP.
func authMethodFits(conn *Conn, m wire.AuthMethod) bool {
	if m == 0 || IsEAP(conn.RemoteAuth) {
		return m == 0 && IsEAP(conn.RemoteAuth)
	}
	if m == wire.AuthSharedKey {
		return conn.RemoteAuth == AuthPSK
	}
	return conn.RemoteAuth == AuthPubkey
}

// certReq is our CERTREQ for the CAs we trust (nil when we do not use certificates).
func certReq(cas []*x509.Certificate) *wire.CertReq {
	if len(cas) == 0 {
		return nil
	}
	return &wire.CertReq{Encoding: wire.CertX509Signature, Data: cert.CertReqData(cas)}
}
