package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// goldenCase is one payload chain written by hand from the figures of RFC 7296 section 3
// (and RFC 4555 / RFC 7383 / draft-smyslov-ipsecme-ikev2-r-mobike for their notifies
// and payloads), with the payloads it must decode to. Decoding wire must give want, and
// encoding want must give wire back, octet for octet.
type goldenCase struct {
	name  string
	first PayloadType
	wire  string
	want  []Payload
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

var goldenCases = []goldenCase{
	{
		name:  "SA IKE two proposals (3.3)",
		first: PayloadSA,
		wire: `
			00 00 00 5c  // generic header: next none, C=0, length 92
			02 00 00 2c  // proposal: last substruc 2 (more), reserved, length 44
			01 01 00 04  // proposal num 1, protocol IKE, SPI size 0, 4 transforms
			03 00 00 0c  // transform: last substruc 3 (more), reserved, length 12
			01 00 00 14  // type ENCR, reserved, ID 20 (AES-GCM-16)
			80 0e 01 00  // attribute AF=1 (TV) type 14 Key Length, value 256
			03 00 00 08  // transform: more, length 8
			02 00 00 07  // type PRF, ID 7 (HMAC-SHA2-512)
			03 00 00 08  // transform: more, length 8
			04 00 00 1f  // type DH, ID 31 (Curve25519)
			00 00 00 08  // transform: last, length 8
			04 00 00 13  // type DH, ID 19 (ECP-256)
			00 00 00 2c  // proposal: last substruc 0 (last), length 44
			02 01 00 04  // proposal num 2, protocol IKE, SPI size 0, 4 transforms
			03 00 00 0c  // transform: more, length 12
			01 00 00 0c  // type ENCR, ID 12 (AES-CBC)
			80 0e 00 80  // TV Key Length 128
			03 00 00 08  // transform: more, length 8
			02 00 00 05  // type PRF, ID 5 (HMAC-SHA2-256)
			03 00 00 08  // transform: more, length 8
			03 00 00 0c  // type INTEG, ID 12 (HMAC-SHA2-256-128)
			00 00 00 08  // transform: last, length 8
			04 00 00 0e  // type DH, ID 14 (MODP-2048)
		`,
		want: []Payload{&SA{Proposals: []Proposal{
			{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: ENCR_AES_GCM_16, Attrs: []Attribute{KeyLengthAttr(256)}},
				{Type: TransformPRF, ID: PRF_HMAC_SHA2_512},
				{Type: TransformDH, ID: DH_X25519},
				{Type: TransformDH, ID: DH_ECP256},
			}},
			{Num: 2, Protocol: ProtoIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: ENCR_AES_CBC, Attrs: []Attribute{KeyLengthAttr(128)}},
				{Type: TransformPRF, ID: PRF_HMAC_SHA2_256},
				{Type: TransformINTEG, ID: AUTH_HMAC_SHA2_256_128},
				{Type: TransformDH, ID: DH_MODP2048},
			}},
		}}},
	},
	{
		name:  "SA ESP with SPI and ESN (3.3.1)",
		first: PayloadSA,
		wire: `
			00 00 00 2c  // generic header: length 44
			00 00 00 28  // proposal: last, length 40
			01 03 04 03  // num 1, protocol ESP, SPI size 4, 3 transforms
			c1 23 45 67  // SPI
			03 00 00 0c  // transform: more, length 12
			01 00 00 14  // ENCR AES-GCM-16
			80 0e 01 00  // TV Key Length 256
			03 00 00 08  // transform: more, length 8
			05 00 00 01  // ESN, ID 1 (extended sequence numbers)
			00 00 00 08  // transform: last, length 8
			05 00 00 00  // ESN, ID 0 (no extended sequence numbers)
		`,
		want: []Payload{&SA{Proposals: []Proposal{{Num: 1, Protocol: ProtoESP, SPI: []byte{0xc1, 0x23, 0x45, 0x67},
			Transforms: []Transform{
				{Type: TransformENCR, ID: ENCR_AES_GCM_16, Attrs: []Attribute{KeyLengthAttr(256)}},
				{Type: TransformESN, ID: ESN_YES},
				{Type: TransformESN, ID: ESN_NO},
			}}}}},
	},
	{
		name:  "SA response proposal 3, TLV attribute (3.3.5)",
		first: PayloadSA,
		wire: `
			00 00 00 1f  // generic header: length 31
			00 00 00 1b  // proposal: last, length 27
			03 01 00 01  // num 3 (accepted proposal in a response), IKE, SPI size 0, 1 transform
			00 00 00 13  // transform: last, length 19
			01 00 00 0c  // ENCR AES-CBC
			00 11 00 03  // attribute AF=0 (TLV), type 17, length 3
			aa bb cc     // attribute value
			80 0e 00 c0  // TV Key Length 192
		`,
		want: []Payload{&SA{Proposals: []Proposal{{Num: 3, Protocol: ProtoIKE, Transforms: []Transform{
			{Type: TransformENCR, ID: ENCR_AES_CBC, Attrs: []Attribute{
				{Type: 17, Data: []byte{0xaa, 0xbb, 0xcc}},
				KeyLengthAttr(192),
			}},
		}}}}},
	},
	{
		name:  "KE (3.4)",
		first: PayloadKE,
		wire: `
			00 00 00 28  // generic header: length 40
			00 1f 00 00  // DH Group Num 31, reserved
			00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  // key exchange data
			10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
		`,
		want: []Payload{&KE{Group: DH_X25519, Data: seq(32, 0)}},
	},
	{
		name:  "IDi FQDN (3.5)",
		first: PayloadIDi,
		wire: `
			00 00 00 16  // generic header: length 22
			02 00 00 00  // ID Type ID_FQDN, reserved
			67 77 2e 65 78 61 6d 70 6c 65 2e 6f 72 67  // "gw.example.org"
		`,
		want: []Payload{&ID{Initiator: true, IDType: ID_FQDN, Data: []byte("gw.example.org")}},
	},
	{
		name:  "IDr IPv4 (3.5)",
		first: PayloadIDr,
		wire: `
			00 00 00 0c  // generic header: length 12
			01 00 00 00  // ID Type ID_IPV4_ADDR, reserved
			c6 33 64 07  // 198.51.100.7
		`,
		want: []Payload{&ID{IDType: ID_IPV4_ADDR, Data: []byte{198, 51, 100, 7}}},
	},
	{
		name:  "IDi IPv6 then IDr RFC822 (3.5)",
		first: PayloadIDi,
		wire: `
			24 00 00 18  // generic header: next IDr, length 24
			05 00 00 00  // ID_IPV6_ADDR, reserved
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  // 2001:db8::1
			00 00 00 14  // generic header: next none, length 20
			03 00 00 00  // ID_RFC822_ADDR, reserved
			75 73 65 72 40 65 78 61 6d 70 6c 65  // "user@example"
		`,
		want: []Payload{
			&ID{Initiator: true, IDType: ID_IPV6_ADDR, Data: netip.MustParseAddr("2001:db8::1").AsSlice()},
			&ID{IDType: ID_RFC822_ADDR, Data: []byte("user@example")},
		},
	},
	{
		name:  "CERT (3.6)",
		first: PayloadCERT,
		wire: `
			00 00 00 0a     // generic header: length 10
			04              // Cert Encoding 4, X.509 Certificate - Signature
			30 03 02 01 00  // certificate data
		`,
		want: []Payload{&Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}},
	},
	{
		name:  "CERTREQ (3.7)",
		first: PayloadCERTREQ,
		wire: `
			00 00 00 19  // generic header: length 25
			04           // Cert Encoding 4
			00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13  // SHA-1 hash of a CA public key
		`,
		want: []Payload{&CertReq{Encoding: CertX509Signature, Data: seq(20, 0)}},
	},
	{
		name:  "AUTH (3.8)",
		first: PayloadAUTH,
		wire: `
			00 00 00 18  // generic header: length 24
			02 00 00 00  // Auth Method 2 (Shared Key Message Integrity Code), reserved
			a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af  // authentication data
		`,
		want: []Payload{&Auth{Method: AuthSharedKey, Data: seq(16, 0xa0)}},
	},
	{
		name:  "Nonce minimum 16 octets (3.9)",
		first: PayloadNonce,
		wire: `
			00 00 00 14  // generic header: length 20
			00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  // nonce data
		`,
		want: []Payload{&Nonce{Data: seq(16, 0)}},
	},
	{
		name:  "N NAT_DETECTION_SOURCE_IP, COOKIE (3.10)",
		first: PayloadNotify,
		wire: `
			29 00 00 1c  // generic header: next N, length 28
			00 00 40 04  // Protocol ID 0, SPI Size 0, type 16388 NAT_DETECTION_SOURCE_IP
			00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13  // SHA-1 hash
			00 00 00 10  // generic header: next none, length 16
			00 00 40 06  // type 16390 COOKIE
			de ad be ef de ad be ef  // cookie
		`,
		want: []Payload{
			&Notify{NotifyType: NAT_DETECTION_SOURCE_IP, Data: seq(20, 0)},
			&Notify{NotifyType: COOKIE, Data: hx("deadbeefdeadbeef")},
		},
	},
	{
		name:  "N REKEY_SA with ESP SPI (3.10)",
		first: PayloadNotify,
		wire: `
			00 00 00 0c  // generic header: length 12
			03 04 40 09  // Protocol ESP, SPI Size 4, type 16393 REKEY_SA
			c1 23 45 67  // SPI, no notification data
		`,
		want: []Payload{&Notify{Protocol: ProtoESP, SPI: []byte{0xc1, 0x23, 0x45, 0x67}, NotifyType: REKEY_SA}},
	},
	{
		name:  "N INVALID_KE_PAYLOAD (3.10.1)",
		first: PayloadNotify,
		wire: `
			00 00 00 0a  // generic header: length 10
			00 00 00 11  // type 17 INVALID_KE_PAYLOAD
			00 13        // accepted group 19
		`,
		want: []Payload{NewInvalidKE(DH_ECP256)},
	},
	{
		name:  "N MOBIKE_SUPPORTED with R, ADDITIONAL_IP4/6_ADDRESS (RFC 4555 4.2, r-mobike 3)",
		first: PayloadNotify,
		wire: `
			29 00 00 09  // generic header: next N, length 9
			00 00 40 0c  // Protocol 0, SPI Size 0, type 16396 MOBIKE_SUPPORTED
			52           // 'R'
			29 00 00 0c  // generic header: next N, length 12
			00 00 40 0d  // type 16397 ADDITIONAL_IP4_ADDRESS
			c0 00 02 0a  // 192.0.2.10
			29 00 00 18  // generic header: next N, length 24
			00 00 40 0e  // type 16398 ADDITIONAL_IP6_ADDRESS
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10  // 2001:db8::10
			29 00 00 08  // generic header: next N, length 8
			00 00 40 10  // type 16400 UPDATE_SA_ADDRESSES
			29 00 00 10  // generic header: next N, length 16
			00 00 40 11  // type 16401 COOKIE2
			01 02 03 04 05 06 07 08  // 8 octets of cookie
			29 00 00 08  // generic header: next N, length 8
			00 00 40 0f  // type 16399 NO_ADDITIONAL_ADDRESSES
			00 00 00 0c  // generic header: next none, length 12
			00 00 a0 0a  // type 40970 SWITCH_TO_IP_ADDRESS (private-use number)
			cb 00 71 05  // 203.0.113.5
		`,
		want: []Payload{
			NewMOBIKESupported(true),
			NewAddressNotify(ADDITIONAL_IP4_ADDRESS, netip.MustParseAddr("192.0.2.10")),
			NewAddressNotify(ADDITIONAL_IP6_ADDRESS, netip.MustParseAddr("2001:db8::10")),
			&Notify{NotifyType: UPDATE_SA_ADDRESSES},
			&Notify{NotifyType: COOKIE2, Data: seq(8, 1)},
			&Notify{NotifyType: NO_ADDITIONAL_ADDRESSES},
			NewAddressNotify(SWITCH_TO_IP_ADDRESS, netip.MustParseAddr("203.0.113.5")),
		},
	},
	{
		name:  "N IKEV2_FRAGMENTATION_SUPPORTED, SIGNATURE_HASH_ALGORITHMS (RFC 7383 2.3, RFC 7427 4)",
		first: PayloadNotify,
		wire: `
			29 00 00 08  // generic header: next N, length 8
			00 00 40 2e  // type 16430 IKEV2_FRAGMENTATION_SUPPORTED
			00 00 00 0e  // generic header: length 14
			00 00 40 2f  // type 16431 SIGNATURE_HASH_ALGORITHMS
			00 02 00 03 00 04  // SHA2-256, SHA2-384, SHA2-512
		`,
		want: []Payload{
			&Notify{NotifyType: IKEV2_FRAGMENTATION_SUPPORTED},
			NewSignatureHashAlgorithms(HashSHA2_256, HashSHA2_384, HashSHA2_512),
		},
	},
	{
		name:  "D IKE then D ESP (3.11)",
		first: PayloadDelete,
		wire: `
			2a 00 00 08  // generic header: next D, length 8
			01 00 00 00  // Protocol IKE, SPI Size 0, Num of SPIs 0
			00 00 00 10  // generic header: length 16
			03 04 00 02  // Protocol ESP, SPI Size 4, Num of SPIs 2
			c1 23 45 67  // SPI 1
			89 ab cd ef  // SPI 2
		`,
		want: []Payload{
			&Delete{Protocol: ProtoIKE},
			&Delete{Protocol: ProtoESP, SPIs: []uint32{0xc1234567, 0x89abcdef}},
		},
	},
	{
		name:  "V (3.12)",
		first: PayloadVendor,
		wire: `
			00 00 00 10  // generic header: length 16
			4f 45 72 6c 41 5c 6e 51 75 6b 53 52  // vendor ID (the one in ikev2pI2.pcap)
		`,
		want: []Payload{&Vendor{Data: []byte("OErlA\\nQukSR")}},
	},
	{
		name:  "TSi IPv4 two selectors, TSr IPv6 (3.13)",
		first: PayloadTSi,
		wire: `
			2d 00 00 28  // generic header: next TSr, length 40
			02 00 00 00  // Number of TSs 2, reserved
			07 00 00 10  // TS_IPV4_ADDR_RANGE, IP protocol 0 (any), selector length 16
			00 00 ff ff  // start port 0, end port 65535
			0a 00 00 00  // start 10.0.0.0
			0a 00 00 ff  // end 10.0.0.255
			07 06 00 10  // TS_IPV4_ADDR_RANGE, protocol 6 (TCP), length 16
			00 50 00 50  // ports 80-80
			c0 00 02 01  // start 192.0.2.1
			c0 00 02 09  // end 192.0.2.9
			00 00 00 30  // generic header: next none, length 48
			01 00 00 00  // Number of TSs 1
			08 00 00 28  // TS_IPV6_ADDR_RANGE, protocol any, selector length 40
			00 00 ff ff  // ports 0-65535
			00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // start ::
			ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff  // end ffff:...:ffff
		`,
		want: []Payload{
			&TS{Initiator: true, Selectors: []TrafficSelector{
				TSFromPrefix(netip.MustParsePrefix("10.0.0.0/24")),
				{Type: TS_IPV4_ADDR_RANGE, IPProtocol: 6, StartPort: 80, EndPort: 80,
					Start: netip.MustParseAddr("192.0.2.1"), End: netip.MustParseAddr("192.0.2.9")},
			}},
			&TS{Selectors: []TrafficSelector{TSFromPrefix(netip.MustParsePrefix("::/0"))}},
		},
	},
	{
		name:  "SK (3.14)",
		first: PayloadSK,
		wire: `
			23 00 00 1c  // generic header: next IDi (first inner payload), length 28
			10 11 12 13 14 15 16 17  // IV
			61 03 94 70              // ciphertext
			6b 71 bf e2 52 36 ef d7 cd c6 70 66  // ICV
		`,
		want: []Payload{&SK{InnerNext: PayloadIDi, Body: hx("1011121314151617 61039470 6b71bfe25236efd7cdc67066")}},
	},
	{
		name:  "SKF fragment 1 of 3 (RFC 7383 2.5)",
		first: PayloadSKF,
		wire: `
			23 00 00 14  // generic header: next IDi (fragment 1 carries it), length 20
			00 01 00 03  // Fragment Number 1, Total Fragments 3
			a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab  // IV, ciphertext, ICV
		`,
		want: []Payload{&SKF{InnerNext: PayloadIDi, Number: 1, Total: 3, Body: seq(12, 0xa0)}},
	},
	{
		name:  "SKF fragment 3 of 3 (RFC 7383 2.5)",
		first: PayloadSKF,
		wire: `
			00 00 00 0c  // generic header: next 0 (not the first fragment), length 12
			00 03 00 03  // Fragment Number 3, Total Fragments 3
			b0 b1 b2 b3  // IV, ciphertext, ICV
		`,
		want: []Payload{&SKF{Number: 3, Total: 3, Body: seq(4, 0xb0)}},
	},
	{
		name:  "CP request then reply (3.15)",
		first: PayloadCP,
		wire: `
			2f 00 00 14  // generic header: next CP, length 20
			01 00 00 00  // CFG_REQUEST, reserved
			00 01 00 00  // R=0, INTERNAL_IP4_ADDRESS, length 0
			00 03 00 00  // INTERNAL_IP4_DNS, length 0
			00 08 00 00  // INTERNAL_IP6_ADDRESS, length 0
			00 00 00 31  // generic header: next none, length 49
			02 00 00 00  // CFG_REPLY
			00 01 00 04  // INTERNAL_IP4_ADDRESS, length 4
			0a 03 00 01  // 10.3.0.1
			00 0d 00 08  // INTERNAL_IP4_SUBNET, length 8
			0a 00 00 00  // 10.0.0.0
			ff 00 00 00  // 255.0.0.0
			00 08 00 11  // INTERNAL_IP6_ADDRESS, length 17
			20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 05  // 2001:db8::5
			40           // prefix length 64
		`,
		want: []Payload{
			&CP{CfgType: CFG_REQUEST, Attrs: []ConfigAttr{{Type: INTERNAL_IP4_ADDRESS}, {Type: INTERNAL_IP4_DNS}, {Type: INTERNAL_IP6_ADDRESS}}},
			&CP{CfgType: CFG_REPLY, Attrs: []ConfigAttr{
				AddrAttr(INTERNAL_IP4_ADDRESS, netip.MustParseAddr("10.3.0.1")),
				PrefixAttr(INTERNAL_IP4_SUBNET, netip.MustParsePrefix("10.0.0.0/8")),
				PrefixAttr(INTERNAL_IP6_ADDRESS, netip.MustParsePrefix("2001:db8::5/64")),
			}},
		},
	},
	{
		name:  "EAP Identity request (3.16)",
		first: PayloadEAP,
		wire: `
			00 00 00 09  // generic header: length 9
			01 2a 00 05  // EAP Code 1 (Request), Identifier 42, Length 5
			01           // Type 1 (Identity)
		`,
		want: []Payload{&EAP{Data: hx("012a000501")}},
	},
	{
		name:  "unknown non-critical payload kept (2.5)",
		first: PayloadNonce,
		wire: `
			31 00 00 14  // generic header: next 49 (unknown here), C=0, length 20
			00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  // nonce
			29 00 00 08  // generic header: next N, C=0, length 8
			de ad be ef  // body of the unknown payload
			00 00 00 08  // generic header: length 8
			00 00 40 00  // INITIAL_CONTACT
		`,
		want: []Payload{
			&Nonce{Data: seq(16, 0)},
			&Unknown{PayloadType: 49, Body: hx("deadbeef")},
			&Notify{NotifyType: INITIAL_CONTACT},
		},
	},
}

func TestGoldenPayloads(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			wire := hx(tc.wire)
			got, err := ParsePayloads(tc.first, wire)
			if err != nil {
				t.Fatalf("ParsePayloads: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, tc.want)
			}
			if enc := AppendPayloads(nil, tc.want); !bytes.Equal(enc, wire) {
				t.Fatalf("encoded\n%x\nwant\n%x", enc, wire)
			}
			// The body decoders alone give the same values.
			for i, rp := range rawChain(tc.first, wire) {
				p, err := parseBody(rp.typ, false, rp.body)
				if err != nil {
					t.Fatalf("payload %d body: %v", i, err)
				}
				if !bytes.Equal(p.AppendBody(nil), rp.body) {
					t.Errorf("payload %d: AppendBody differs", i)
				}
			}
		})
	}
}

func TestGoldenAppendsAfterPrefix(t *testing.T) {
	// Encoders append: existing content of b is kept and lengths are right.
	prefix := []byte{1, 2, 3}
	for _, tc := range goldenCases {
		enc := AppendPayloads(append([]byte(nil), prefix...), tc.want)
		if !bytes.Equal(enc[:3], prefix) || !bytes.Equal(enc[3:], hx(tc.wire)) {
			t.Errorf("%s: append after prefix differs", tc.name)
		}
	}
}

// rfc7634Message is the complete protected IKEv2 message of RFC 7634 Appendix B.
const rfc7634Message = `
	c0 c1 c2 c3 c4 c5 c6 c7  // IKE SA Initiator's SPI
	d0 d1 d2 d3 d4 d5 d6 d7  // IKE SA Responder's SPI
	2e                       // Next Payload 46 (SK)
	20                       // Version 2.0
	25                       // Exchange Type 37 (INFORMATIONAL)
	00                       // flags: none
	00 00 00 09              // Message ID 9
	00 00 00 45              // Length 69
	29 00 00 29              // SK generic header: next N (inner), C=0, length 41
	10 11 12 13 14 15 16 17  // IV
	61 03 94 70 1f 8d 01 7f 7c 12 92 48 89  // ciphertext
	6b 71 bf e2 52 36 ef d7 cd c6 70 66 90 63 15 b2  // ICV
`

func TestRFC7634Message(t *testing.T) {
	b := hx(rfc7634Message)
	m, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	wantH := Header{SPIi: 0xc0c1c2c3c4c5c6c7, SPIr: 0xd0d1d2d3d4d5d6d7, NextPayload: PayloadSK, Version: 0x20,
		Exchange: INFORMATIONAL, MessageID: 9, Length: 69}
	if m.Header != wantH {
		t.Errorf("header %+v, want %+v", m.Header, wantH)
	}
	sk, ok := m.Payloads[0].(*SK)
	if len(m.Payloads) != 1 || !ok {
		t.Fatalf("payloads %#v", m.Payloads)
	}
	if sk.InnerNext != PayloadNotify || len(sk.Body) != 37 {
		t.Errorf("SK next %v body %d", sk.InnerNext, len(sk.Body))
	}
	if enc := m.Append(nil); !bytes.Equal(enc, b) {
		t.Errorf("re-encoded %x", enc)
	}
	// The AAD the RFC lists is exactly what AppendSKHeader writes.
	aad := AppendSKHeader(nil, m.Header, PayloadNotify, len(sk.Body))
	want := hx("c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e202500000000090000004529000029") // RFC 7634 B "aad"
	if !bytes.Equal(aad, want) {
		t.Errorf("AppendSKHeader %x, want %x", aad, want)
	}
	if !bytes.Equal(b[:len(b)-len(sk.Body)], aad) {
		t.Error("AAD is not the message minus the SK body")
	}
	// The RFC's plaintext: the inner Notify SET_WINDOW_SIZE(10), then the Pad Length octet.
	inner, err := ParsePayloads(sk.InnerNext, hx("0000000c 00004001 0000000a"))
	if err != nil {
		t.Fatal(err)
	}
	n := FindNotify(inner, SET_WINDOW_SIZE)
	if n == nil || !bytes.Equal(n.Data, []byte{0, 0, 0, 10}) {
		t.Errorf("inner %#v", inner)
	}
}

func TestAppendSKFHeader(t *testing.T) {
	h := Header{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1, NextPayload: PayloadSA, Length: 999}
	body := seq(20, 0x40)
	b := append(AppendSKFHeader(nil, h, PayloadIDi, 1, 2, len(body)), body...)
	want := hx(`
		00 00 00 00 00 00 00 01  // SPIi
		00 00 00 00 00 00 00 02  // SPIr
		35 20 23 08              // next SKF (53), version 2.0, IKE_AUTH, Initiator flag
		00 00 00 01              // Message ID 1
		00 00 00 38              // Length 56 = 28 + 8 + 20
		23 00 00 1c              // SKF: next IDi, length 28
		00 01 00 02              // fragment 1 of 2
	`)
	want = append(want, body...)
	if !bytes.Equal(b, want) {
		t.Fatalf("got  %x\nwant %x", b, want)
	}
	m, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	f := Find[*SKF](m.Payloads)
	if f == nil || f.InnerNext != PayloadIDi || f.Number != 1 || f.Total != 2 || !bytes.Equal(f.Body, body) {
		t.Fatalf("SKF %#v", f)
	}
}

func TestMessageAppendComputesHeader(t *testing.T) {
	m := &Message{
		Header: Header{SPIi: 0x0102030405060708, Exchange: IKE_SA_INIT, Flags: FlagInitiator, NextPayload: PayloadCP, Length: 5},
		Payloads: []Payload{
			&Notify{NotifyType: IKEV2_FRAGMENTATION_SUPPORTED},
			&Unknown{PayloadType: 49, Critical: true, Body: []byte{1}},
		},
	}
	b := m.Append(nil)
	want := hx(`
		01 02 03 04 05 06 07 08  00 00 00 00 00 00 00 00  // SPIs
		29 20 22 08              // next N, version 2.0 (written for a zero Version), IKE_SA_INIT, I flag
		00 00 00 00              // Message ID 0
		00 00 00 29              // Length 41
		31 00 00 08  00 00 40 2e // N(IKEV2_FRAGMENTATION_SUPPORTED), next 49
		00 80 00 05  01          // unknown payload with the critical bit, body 01
	`)
	if !bytes.Equal(b, want) {
		t.Fatalf("got  %x\nwant %x", b, want)
	}
	if m.Header.Length != 5 || m.Header.NextPayload != PayloadCP {
		t.Error("Append modified m.Header")
	}
	// A critical unknown payload is rejected on receipt with the notify to send.
	_, err := ParseMessage(b)
	var we *Error
	if !errors.As(err, &we) || we.Notify != UNSUPPORTED_CRITICAL_PAYLOAD || !bytes.Equal(we.Data, []byte{49}) || we.Payload != 49 {
		t.Fatalf("err %v (%#v)", err, we)
	}
}
