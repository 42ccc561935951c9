package ike

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/mobikevpn/mobikevpn/ike/cert"
	ikecrypto "github.com/mobikevpn/mobikevpn/ike/crypto"
	"github.com/mobikevpn/mobikevpn/ike/wire"
)

// Authentication methods of a connection's ends.
const (
	AuthPSK    = "psk"
	AuthPubkey = "pubkey"
)

// signedOctets are what AUTH covers for the sender of msg1 (RFC 7296 2.15).
func (sa *IKESA) signedOctets(msg1, peerNonce, skp []byte, id *wire.ID) []byte {
	return ikecrypto.SignedOctets(sa.prf, msg1, peerNonce, skp, idBody(id))
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
		chain, err := cert.ParseCerts(ders)
		if err != nil {
			return err
		}
		v := cert.Validator{Roots: conn.RemoteCAs}
		leaf, err := v.Validate(chain)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		if !cert.IDMatches(id, leaf) {
			return fmt.Errorf("identity %s is not in the certificate of %s", id.String(), leaf.Subject.String())
		}
		// The identity we expect must be the peer's, by its ID payload or its
		// certificate (a peer may present its DN while we name it by a subjectAltName).
		if !anyID(conn.RemoteID) && !idMatches(conn.RemoteID, id) {
			want := wire.IDFromString(conn.RemoteID)
			if !cert.IDMatches(&want, leaf) {
				return fmt.Errorf("the peer is %s, not %s", id.String(), conn.RemoteID)
			}
		}
		if err := cert.Verify(auth.Method, auth.Data, signed, leaf); err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		return nil
	}
	return fmt.Errorf("remote authentication %q is not supported", conn.RemoteAuth)
}

// authMethodFits reports whether an AUTH method can satisfy a connection's remote auth.
func authMethodFits(conn *Conn, m wire.AuthMethod) bool {
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
