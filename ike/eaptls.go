package ike

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mobikevpn/mobikevpn/cert"
	"github.com/mobikevpn/mobikevpn/wire"
)

// eapTLSConfig is the TLS configuration of sa's EAP-TLS, the gateway's (server) or
// the client's. Both present the end's certificate (LocalCred) and verify the
// other's with the connection's CAs, EKUs and CRLs (cert.Validator), not with
// crypto/tls's own checks: the gateway's certificate must carry the identity the
// client authenticated in IKE (IDr), the client's its EAP identity. The clock and
// the randomness are the engine's.
func (e *Engine) eapTLSConfig(sa *IKESA, server bool) *tls.Config {
	conn := sa.conn
	cfg := &tls.Config{
		Rand:       e.rand,
		Time:       func() time.Time { return eapNow(sa) },
		MinVersion: tls.VersionTLS12,
		// We verify the peer's chain ourselves (VerifyPeerCertificate).
		InsecureSkipVerify: true,
	}
	if conn.LocalCred != nil {
		c := tls.Certificate{PrivateKey: conn.LocalCred.Key, Leaf: conn.LocalCred.Chain[0]}
		for _, x := range conn.LocalCred.Chain {
			c.Certificate = append(c.Certificate, x.Raw)
		}
		cfg.Certificates = []tls.Certificate{c}
		if !server {
			// Our one certificate whatever CAs the server names (crypto/tls would send
			// none when the request names only CAs above ours; strongSwan names only
			// some of those it trusts): the server decides.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
	}
	if server {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		leaf, err := e.validatePeerChain(sa, conn, raw)
		if err != nil {
			return fmt.Errorf("EAP-TLS certificate: %w", err)
		}
		var want wire.ID
		if server {
			if sa.eap == nil || sa.eap.identity == "" {
				return errors.New("EAP-TLS: no EAP identity to check the client's certificate against")
			}
			want = wire.IDFromString(sa.eap.identity)
		} else {
			want = sa.remoteID
			// And the identity the connection expects of its gateway (as
			// checkPeerAuth), which with EAP-only authentication only this checks.
			if exp, _, ok := expectedPeerID(conn, sa.remote.Addr(), sa.host); ok && !cert.IDMatches(&exp, leaf) {
				return fmt.Errorf("EAP-TLS: the certificate of %s does not carry the gateway's identity %s", subjectOf(leaf), exp.String())
			}
		}
		if !cert.IDMatches(&want, leaf) {
			return fmt.Errorf("EAP-TLS: the certificate of %s does not carry the identity %s", subjectOf(leaf), want.String())
		}
		return nil
	}
	return cfg
}

// eapNow is the time of the packet sa's EAP conversation is processing (the engine
// sets it before it hands the method a packet).
func eapNow(sa *IKESA) time.Time {
	if sa.eap == nil {
		return time.Time{}
	}
	return sa.eap.now
}
