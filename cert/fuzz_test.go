package cert

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/mobikevpn/mobikevpn/wire"
)

// fuzzLeaves are the testdata leaves of each key type: RSA-3072, ECDSA P-256, Ed25519,
// and the P-384 ECDSA CA (for methods 9/10 mismatches).
func fuzzLeaves(f *testing.F) []*x509.Certificate {
	return []*x509.Certificate{loadOne(f, "rsa-gw.pem"), loadOne(f, "ecdsa-gw.der.crt"),
		loadOne(f, "ed25519-gw.pem"), loadOne(f, "ecdsa-ca.pem")}
}

// FuzzVerify: arbitrary AUTH data, method and signed octets never panic, and only a
// signature really made by the leaf's key verifies.
func FuzzVerify(f *testing.F) {
	leaves := fuzzLeaves(f)
	signed := readTD(f, "signed.bin")
	creds := []struct {
		certs []string
		key   string
	}{
		{[]string{"rsa-gw.pem"}, "rsa-gw.key"},
		{[]string{"ecdsa-gw.der.crt"}, "ecdsa-gw.der"},
		{[]string{"ed25519-gw.pem"}, "ed25519-gw.key"},
	}
	for i, c := range creds {
		cred, err := LoadCredential([]string{td(c.certs[0])}, td(c.key))
		if err != nil {
			f.Fatal(err)
		}
		cred.RSAPSS = i == 0
		for _, peer := range [][]uint16{nil, {2}, {3}, {4}, {5}} {
			m, data, err := cred.Sign(signed, peer)
			if err == nil {
				f.Add(uint8(m), uint8(i), data, signed)
			}
		}
	}
	for _, p := range []string{rfcSHA256WithRSA, rfcPSSSHA256, rfcPSSDefault, rfcECDSAWith384, rfcEd25519, rfcDSAWithSHA1} {
		ai := unhex(f, p)
		f.Add(uint8(14), uint8(0), append(append([]byte{byte(len(ai))}, ai...), make([]byte, 64)...), signed)
	}
	f.Add(uint8(10), uint8(3), make([]byte, 96), []byte{})
	f.Fuzz(func(t *testing.T, method, which uint8, authData, signedOctets []byte) {
		leaf := leaves[int(which)%len(leaves)]
		err := Verify(wire.AuthMethod(method), authData, signedOctets, leaf)
		if err == nil && (len(authData) == 0 || method == uint8(wire.AuthSharedKey)) {
			t.Fatalf("method %d, %x verified", method, authData)
		}
	})
}

// FuzzParseCerts: arbitrary CERT payload data never panics; whatever parses can be
// validated and matched without panicking.
func FuzzParseCerts(f *testing.F) {
	leaves := fuzzLeaves(f)
	for _, l := range leaves {
		f.Add(l.Raw, loadOne(f, "ecdsa-int.pem").Raw)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, []byte{})
	roots := []*x509.Certificate{loadOne(f, "rsa-ca.pem"), loadOne(f, "ecdsa-ca.pem"), loadOne(f, "ed25519-ca.pem")}
	v := &Validator{Roots: roots, Now: func() time.Time { return testNow }}
	ids := []wire.ID{wire.IDFromString("gw.example.org"), wire.IDFromString("alice@example.org"),
		wire.IDFromString("198.51.100.1"), wire.IDFromString("C=CH, O=mobikevpn test, CN=gw.example.org")}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, payloads := range [][][]byte{{a}, {a, b}} {
			certs, err := ParseCerts(payloads)
			if err != nil {
				if certs != nil {
					t.Fatal("certificates with an error")
				}
				continue
			}
			if len(certs) != len(payloads) {
				t.Fatalf("%d certificates from %d payloads", len(certs), len(payloads))
			}
			_, _ = v.Validate(certs)
			for i := range ids {
				IDMatches(&ids[i], certs[0])
			}
			MatchCertReq(b, certs)
			_ = CertReqData(certs)
		}
	})
}
