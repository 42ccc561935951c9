package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// badBody is a malformed payload body and the start of the reason it must be refused with.
type badBody struct {
	name   string
	parse  func([]byte) error
	body   string
	reason string
}

func p[T any](f func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := f(b); return err }
}

var badBodies = []badBody{
	{"SA empty", p(ParseSA), ``, "no proposals"},
	{"SA proposal header short", p(ParseSA), `00 00 00 08 01 01 00`, "proposal header truncated"},
	{"SA proposal length short", p(ParseSA), `00 00 00 07 01 01 00 00`, "proposal length 7"},
	{"SA proposal length long", p(ParseSA), `00 00 00 11 01 01 00 01 00 00 00 08 01 00 00 0c`, "proposal length 17, 16 octets remain"},
	{"SA proposal number 0", p(ParseSA), `00 00 00 10  00 01 00 01  00 00 00 08 01 00 00 0c`, "proposal number 0"},
	{"SA proposal numbers skip", p(ParseSA), `
		02 00 00 10  01 01 00 01  00 00 00 08 01 00 00 0c
		00 00 00 10  03 01 00 01  00 00 00 08 01 00 00 0c`, "proposal number 3 follows 1"},
	{"SA first of two is 2", p(ParseSA), `
		02 00 00 10  02 01 00 01  00 00 00 08 01 00 00 0c
		00 00 00 10  03 01 00 01  00 00 00 08 01 00 00 0c`, "first of several proposals has number 2"},
	{"SA last substruc 1", p(ParseSA), `01 00 00 10  01 01 00 01  00 00 00 08 01 00 00 0c`, "proposal Last Substruc 1"},
	{"SA more proposals announced", p(ParseSA), `02 00 00 10  01 01 00 01  00 00 00 08 01 00 00 0c`, "proposal 1 announces another"},
	{"SA bytes after last proposal", p(ParseSA), `00 00 00 10  01 01 00 01  00 00 00 08 01 00 00 0c  00`, "1 octets after the last proposal"},
	{"SA protocol 0", p(ParseSA), `00 00 00 10  01 00 00 01  00 00 00 08 01 00 00 0c`, "proposal 1: protocol ID 0"},
	{"SA IKE SPI 4", p(ParseSA), `00 00 00 14  01 01 04 01  01 02 03 04  00 00 00 08 01 00 00 0c`, "proposal 1: IKE SPI size 4"},
	{"SA ESP SPI 0", p(ParseSA), `00 00 00 10  01 03 00 01  00 00 00 08 01 00 00 0c`, "proposal 1: ESP SPI size 0"},
	{"SA SPI past proposal", p(ParseSA), `00 00 00 0c  01 03 04 01  01 02 03`, "proposal length 12, 11"},
	{"SA no transforms", p(ParseSA), `00 00 00 08  01 01 00 00`, "proposal 1 has no transforms"},
	{"SA fewer transforms than count", p(ParseSA), `00 00 00 10  01 01 00 02  00 00 00 08 01 00 00 0c`, "proposal 1: 1 transforms, its count says 2"},
	{"SA more transforms than count", p(ParseSA), `00 00 00 18  01 01 00 01  03 00 00 08 01 00 00 0c  00 00 00 08 02 00 00 05`, "proposal 1: more transforms than its count 1"},
	{"SA transform announces another", p(ParseSA), `00 00 00 10  01 01 00 01  03 00 00 08 01 00 00 0c`, "proposal 1: last transform announces another"},
	{"SA transform last but more follow", p(ParseSA), `00 00 00 18  01 01 00 02  00 00 00 08 01 00 00 0c  00 00 00 08 02 00 00 05`, "proposal 1: 8 octets after the last transform"},
	{"SA transform last substruc 2", p(ParseSA), `00 00 00 10  01 01 00 01  02 00 00 08 01 00 00 0c`, "proposal 1: transform Last Substruc 2"},
	{"SA transform length 7", p(ParseSA), `00 00 00 10  01 01 00 01  00 00 00 07 01 00 00 0c`, "proposal 1: transform length 7"},
	{"SA transform header short", p(ParseSA), `00 00 00 0f  01 01 00 01  00 00 00 08 01 00 00`, "proposal 1: transform header truncated"},
	{"SA attribute truncated", p(ParseSA), `00 00 00 13  01 01 00 01  00 00 00 0b 01 00 00 0c  80 0e 00`, "proposal 1 transform 1: attribute truncated"},
	{"SA TLV attribute too long", p(ParseSA), `00 00 00 15  01 01 00 01  00 00 00 0d 01 00 00 0c  00 11 00 02 aa`, "proposal 1 transform 1: attribute length exceeds"},
	{"KE short", p(ParseKE), `00 13 00`, "body is 3 octets"},
	{"IDi short", p(func(b []byte) (*ID, error) { return ParseID(b, true) }), `01 00 00`, "body is 3 octets"},
	{"IDr IPv4 of 5", p(func(b []byte) (*ID, error) { return ParseID(b, false) }), `01 00 00 00 01 02 03 04 05`, "ID_IPV4_ADDR data is 5 octets, want 4"},
	{"IDr IPv6 of 4", p(func(b []byte) (*ID, error) { return ParseID(b, false) }), `05 00 00 00 01 02 03 04`, "ID_IPV6_ADDR data is 4 octets, want 16"},
	{"CERT empty", p(ParseCert), ``, "empty body"},
	{"CERTREQ empty", p(ParseCertReq), ``, "empty body"},
	{"AUTH short", p(ParseAuth), `02 00 00`, "body is 3 octets"},
	{"Nonce 15", p(ParseNonce), `00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e`, "nonce is 15 octets, want 16 to 256"},
	{"Nonce 257", p(ParseNonce), strings.Repeat("aa", 257), "nonce is 257 octets"},
	{"N short", p(ParseNotify), `00 00 40`, "body is 3 octets"},
	{"N SPI past body", p(ParseNotify), `03 04 40 09 01 02 03`, "REKEY_SA: SPI size 4, 3 octets remain"},
	{"D short", p(ParseDelete), `03 04 00`, "body is 3 octets"},
	{"D IKE with SPI size", p(ParseDelete), `01 08 00 01 01 02 03 04 05 06 07 08`, "IKE: SPI size 8, 1 SPIs, 8 octets"},
	{"D IKE with count", p(ParseDelete), `01 00 00 01`, "IKE: SPI size 0, 1 SPIs"},
	{"D ESP SPI size 8", p(ParseDelete), `03 08 00 01 01 02 03 04 05 06 07 08`, "ESP: SPI size 8"},
	{"D ESP count mismatch", p(ParseDelete), `03 04 00 02 01 02 03 04`, "ESP: SPI size 4, 2 SPIs, 4 octets"},
	{"D AH extra", p(ParseDelete), `02 04 00 01 01 02 03 04 05`, "AH: SPI size 4, 1 SPIs, 5 octets"},
	{"D protocol 0", p(ParseDelete), `00 00 00 00`, "protocol ID 0"},
	{"TS short", p(func(b []byte) (*TS, error) { return ParseTS(b, true) }), `01 00 00`, "body is 3 octets"},
	{"TS unknown type", p(func(b []byte) (*TS, error) { return ParseTS(b, true) }), `01 00 00 00  09 00 00 10 00 00 ff ff 00 00 00 00 ff ff ff ff`, "selector 1: unknown TS type 9"},
	{"TS IPv4 length 40", p(func(b []byte) (*TS, error) { return ParseTS(b, true) }), `01 00 00 00  07 00 00 28 00 00 ff ff 00 00 00 00 ff ff ff ff`, "selector 1: length 40, want 16"},
	{"TS IPv6 truncated", p(func(b []byte) (*TS, error) { return ParseTS(b, false) }), `01 00 00 00  08 00 00 28 00 00 ff ff 00 00 00 00 ff ff ff ff`, "selector 1: length 40, want 40, 16 octets remain"},
	{"TS count 2 with 1", p(func(b []byte) (*TS, error) { return ParseTS(b, true) }), `02 00 00 00  07 00 00 10 00 00 ff ff 00 00 00 00 ff ff ff ff`, "selector 2 of 2 truncated"},
	{"TS extra octets", p(func(b []byte) (*TS, error) { return ParseTS(b, true) }), `01 00 00 00  07 00 00 10 00 00 ff ff 00 00 00 00 ff ff ff ff 00`, "1 octets after 1 selectors"},
	{"CP short", p(ParseCP), `01 00 00`, "body is 3 octets"},
	{"CP attribute header short", p(ParseCP), `01 00 00 00  00 01 00`, "attribute header truncated"},
	{"CP attribute too long", p(ParseCP), `02 00 00 00  00 01 00 04 0a 00 00`, "attribute 1: length 4, 3 octets remain"},
	{"EAP short", p(ParseEAP), `01 02 00`, "body is 3 octets"},
	{"EAP length past body", p(ParseEAP), `01 02 00 06 01`, "EAP length 6, body is 5 octets"},
	{"EAP length 3", p(ParseEAP), `01 02 00 03 01`, "EAP length 3"},
	{"SKF short", p(ParseSKF), `00 01 00`, "body is 3 octets"},
	{"SKF number 0", p(ParseSKF), `00 00 00 03 aa`, "fragment 0 of 3"},
	{"SKF number past total", p(ParseSKF), `00 04 00 03 aa`, "fragment 4 of 3"},
	{"SKF total 0", p(ParseSKF), `00 01 00 00 aa`, "fragment 1 of 0"},
}

func TestMalformedBodies(t *testing.T) {
	for _, tc := range badBodies {
		err := tc.parse(hx(tc.body))
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX || !strings.HasPrefix(we.Reason, tc.reason) {
			t.Errorf("%s: got %v, want reason %q", tc.name, err, tc.reason)
		}
	}
}

func TestErrorText(t *testing.T) {
	_, err := ParseNonce(make([]byte, 15))
	if got, want := err.Error(), "wire: Nonce payload: nonce is 15 octets, want 16 to 256 (INVALID_SYNTAX)"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	_, err = ParseMessage(make([]byte, 10))
	if got, want := err.Error(), "wire: message: header is 10 octets, want at least 28 (INVALID_SYNTAX)"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// header builds an IKE header with the given next payload, version and length.
func header(next PayloadType, version uint8, length int) []byte {
	h := Header{SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, NextPayload: next, Version: version,
		Exchange: INFORMATIONAL, Flags: FlagResponse, MessageID: 7, Length: uint32(length)}
	return h.Append(nil)
}

func TestParseHeader(t *testing.T) {
	b := hx(`
		11 22 33 44 55 66 77 88  // SPIi
		99 aa bb cc dd ee ff 00  // SPIr
		29 21 25 20              // next N, version 2.1 (minor ignored), INFORMATIONAL, Response flag
		00 00 00 07              // Message ID 7
		00 00 00 1c              // Length 28
		ff ff                    // more octets: ParseHeader does not look at them
	`)
	h, err := ParseHeader(b)
	want := Header{SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, NextPayload: PayloadNotify, Version: 0x21,
		Exchange: INFORMATIONAL, Flags: FlagResponse, MessageID: 7, Length: 28}
	if err != nil || h != want || !h.IsResponse() || h.IsInitiator() {
		t.Fatalf("%+v %v", h, err)
	}
	if !bytes.Equal(h.Append(nil), b[:28]) {
		t.Error("Append differs")
	}
	for _, v := range []uint8{0x10, 0x30, 0x00} {
		b := header(PayloadNone, 0x20, 28)
		b[17] = v
		h, err := ParseHeader(b)
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_MAJOR_VERSION || h.SPIi != 0x1122334455667788 || h.MessageID != 7 {
			t.Errorf("version %#x: %+v %v", v, h, err)
		}
	}
	if _, err := ParseHeader(header(PayloadNone, 0x20, 27)); err == nil || !strings.Contains(err.Error(), "length field 27") {
		t.Errorf("Length 27: %v", err)
	}
	if _, err := ParseHeader(b[:27]); err == nil {
		t.Error("27 octets parsed")
	}
}

func TestParseMessageErrors(t *testing.T) {
	n := AppendPayloads(nil, []Payload{&Notify{NotifyType: INITIAL_CONTACT}}) // 8 octets
	sk := AppendPayloads(nil, []Payload{&SK{InnerNext: PayloadNotify, Body: []byte{1, 2, 3}}})
	cases := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"length field larger", append(header(PayloadNotify, 0x20, 37), n...), "header length field 37, message is 36 octets"},
		{"length field smaller", append(header(PayloadNotify, 0x20, 35), n...), "header length field 35, message is 36 octets"},
		{"trailing octets", append(append(header(PayloadNotify, 0x20, 37), n...), 0), "1 octets after the last payload"},
		{"chain ends early", header(PayloadSA, 0x20, 28), "generic header truncated"},
		{"payload length past end", append(header(PayloadNotify, 0x20, 35), n[:7]...), "payload length 8, 7 octets remain"},
		{"payload length 3", append(header(PayloadNotify, 0x20, 36), 0, 0, 0, 3, 0, 0, 0, 0), "payload length 3"},
		{"SK not last", append(append(header(PayloadSK, 0x20, 43), sk...), n[:8]...), "not the last payload"},
		{"next none but octets", append(header(PayloadNone, 0x20, 36), n...), "8 octets after the last payload"},
	}
	for _, tc := range cases {
		_, err := ParseMessage(tc.msg)
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX || !strings.Contains(we.Reason, tc.reason) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.reason)
		}
	}
}

func TestPayloadCap(t *testing.T) {
	ps := make([]Payload, MaxPayloads)
	for i := range ps {
		ps[i] = &Vendor{}
	}
	chain := AppendPayloads(nil, ps)
	if got, err := ParsePayloads(PayloadVendor, chain); err != nil || len(got) != MaxPayloads {
		t.Fatalf("%d payloads: %v", len(got), err)
	}
	chain = AppendPayloads(nil, append(ps, &Vendor{}))
	if _, err := ParsePayloads(PayloadVendor, chain); err == nil || !strings.Contains(err.Error(), "more than 256 payloads") {
		t.Fatalf("%v", err)
	}
}

func TestUnknownPayloads(t *testing.T) {
	// Unknown type 13 (an IKEv1 type) without the critical bit is skipped over and kept.
	chain := hx(`
		29 7f 00 06  ab cd  // next N, C=0 with all reserved bits set, length 6
		00 00 00 08  00 00 40 00
	`)
	ps, err := ParsePayloads(13, chain)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := ps[0].(*Unknown); !ok || u.PayloadType != 13 || u.Critical || !bytes.Equal(u.Body, []byte{0xab, 0xcd}) {
		t.Fatalf("%#v", ps[0])
	}
	if FindNotify(ps, INITIAL_CONTACT) == nil {
		t.Error("notify after the unknown payload lost")
	}
	// With the critical bit: UNSUPPORTED_CRITICAL_PAYLOAD naming the type.
	chain[1] = 0x80
	_, err = ParsePayloads(13, chain)
	var we *Error
	if !errors.As(err, &we) || we.Notify != UNSUPPORTED_CRITICAL_PAYLOAD || !bytes.Equal(we.Data, []byte{13}) {
		t.Fatalf("%v", err)
	}
	// A known payload with the critical bit is accepted (the bit is ignored, RFC 7296 3.2).
	known := hx(`00 80 00 08  00 00 40 00`)
	if ps, err := ParsePayloads(PayloadNotify, known); err != nil || len(ps) != 1 {
		t.Fatalf("%v", err)
	}
}

func TestAppendPayloadsOversize(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "does not fit") {
			t.Fatalf("recovered %v", r)
		}
	}()
	AppendPayloads(nil, []Payload{&Vendor{Data: make([]byte, 0xffff-3)}})
}
