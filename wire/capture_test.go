package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The captures in testdata come from tcpdump's test suite; the .out files are tcpdump's
// own decoding of them, used here as the oracle (see testdata/README.md).

// outFrame is what tcpdump printed for one IKEv2 frame.
type outFrame struct {
	frame    int
	msgID    uint32
	exchange ExchangeType
	flags    string // tcpdump's letters: I (initiator), V (version), R (response)
	payloads []outPayload
}

type outPayload struct {
	typ       PayloadType
	length    int    // tcpdump's len= (its meaning depends on the payload, see below)
	notify    int    // n: type=
	data      string // full hex when tcpdump printed it without eliding
	proposals []outProposal
}

type outProposal struct {
	num, count int
	transforms []Transform
}

var (
	outFrameRE = regexp.MustCompile(`^\s*(\d+)\s+\d{4}-\d\d-\d\d `)
	outHdrRE   = regexp.MustCompile(`isakmp 2\.0 msgid ([0-9a-f]{8})(?: cookie [0-9a-f]+->[0-9a-f]+)?: \S+\s+(\w+)\[([IVR]*)\]:`)
	outPlRE    = regexp.MustCompile(`^    \((\w+)(?:\[C\])?: (.*)$`)
	outPropRE  = regexp.MustCompile(`^\s+\(p: #(\d+) protoid=isakmp transform=(\d+) len=\d+`)
	outTrRE    = regexp.MustCompile(`^\s+\(t: #\d+ type=(\w+) id=([\w-]+) (?:\(type=keylen value=([0-9a-f]{4})\))?`)
	outLenRE   = regexp.MustCompile(`len=(\d+)`)
	outTypeRE  = regexp.MustCompile(`type=(\d+)`)
	outDataRE  = regexp.MustCompile(`(?:data|nonce)=\(([0-9a-f]+)\)`)
	outHexRE   = regexp.MustCompile(`(?:group=\w+|len=\d+) ([0-9a-f]{16,})`)
	outVidRE   = regexp.MustCompile(`vid=.* ([0-9a-f]+)\)$`)
)

var outExchanges = map[string]ExchangeType{
	"ikev2_init": IKE_SA_INIT, "ikev2_auth": IKE_AUTH, "child_sa": CREATE_CHILD_SA, "inf2": INFORMATIONAL,
}

var outPayloadTypes = map[string]PayloadType{
	"sa": PayloadSA, "v2ke": PayloadKE, "nonce": PayloadNonce, "n": PayloadNotify, "v2e": PayloadSK, "v2vid": PayloadVendor,
}

var outTransforms = map[string]map[string]uint16{
	"encr":  {"aes": ENCR_AES_CBC, "3des": ENCR_3DES},
	"prf":   {"hmac-sha": PRF_HMAC_SHA1, "hmac-md5": PRF_HMAC_MD5, "aes128_xcbc": PRF_AES128_XCBC},
	"integ": {"hmac-sha": AUTH_HMAC_SHA1_96, "hmac-md5": AUTH_HMAC_MD5_96, "aes-xcbc": AUTH_AES_XCBC_96},
	"dh":    {"modp1024": DH_MODP1024, "modp1536": DH_MODP1536, "modp2048": DH_MODP2048},
}

var outTransformTypes = map[string]TransformType{"encr": TransformENCR, "prf": TransformPRF, "integ": TransformINTEG, "dh": TransformDH}

// readOut parses the parts of a tcpdump -v IKEv2 decoding that the tests compare.
func readOut(t *testing.T, path string) []outFrame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var frames []outFrame
	var cur *outFrame
	var pl *outPayload
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := outFrameRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			frames = append(frames, outFrame{frame: n})
			cur, pl = &frames[len(frames)-1], nil
			continue
		}
		if cur == nil {
			continue
		}
		if m := outHdrRE.FindStringSubmatch(line); m != nil {
			id, _ := strconv.ParseUint(m[1], 16, 32)
			ex, ok := outExchanges[m[2]]
			if !ok {
				t.Fatalf("%s: exchange %q", path, m[2])
			}
			cur.msgID, cur.exchange, cur.flags = uint32(id), ex, m[3]
			continue
		}
		if m := outPlRE.FindStringSubmatch(line); m != nil {
			typ, ok := outPayloadTypes[m[1]]
			if !ok {
				t.Fatalf("%s: payload %q", path, m[1])
			}
			cur.payloads = append(cur.payloads, outPayload{typ: typ})
			pl = &cur.payloads[len(cur.payloads)-1]
			if l := outLenRE.FindStringSubmatch(m[2]); l != nil {
				pl.length, _ = strconv.Atoi(l[1])
			}
			if typ == PayloadNotify {
				n := outTypeRE.FindStringSubmatch(m[2])
				pl.notify, _ = strconv.Atoi(n[1])
			}
			if d := outDataRE.FindStringSubmatch(m[2]); d != nil {
				pl.data = d[1]
			} else if d := outHexRE.FindStringSubmatch(m[2]); d != nil {
				pl.data = d[1]
			} else if d := outVidRE.FindStringSubmatch(m[2]); d != nil && typ == PayloadVendor {
				pl.data = d[1]
			}
			continue
		}
		if m := outPropRE.FindStringSubmatch(line); m != nil && pl != nil {
			num, _ := strconv.Atoi(m[1])
			count, _ := strconv.Atoi(m[2])
			pl.proposals = append(pl.proposals, outProposal{num: num, count: count})
			continue
		}
		if m := outTrRE.FindStringSubmatch(line); m != nil && pl != nil && len(pl.proposals) > 0 {
			ids, ok := outTransforms[m[1]]
			id, ok2 := ids[m[2]]
			if !ok || !ok2 {
				t.Fatalf("%s: transform %s %s", path, m[1], m[2])
			}
			tr := Transform{Type: outTransformTypes[m[1]], ID: id}
			if m[3] != "" {
				v, _ := strconv.ParseUint(m[3], 16, 16)
				tr.Attrs = []Attribute{KeyLengthAttr(uint16(v))}
			}
			p := &pl.proposals[len(pl.proposals)-1]
			p.transforms = append(p.transforms, tr)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return frames
}

// checkAgainstOut compares a parsed message with tcpdump's decoding of it.
func checkAgainstOut(t *testing.T, m *Message, of outFrame) {
	t.Helper()
	h := m.Header
	if h.MessageID != of.msgID || h.Exchange != of.exchange {
		t.Errorf("frame %d: msgid %d exchange %v, tcpdump says %d %v", of.frame, h.MessageID, h.Exchange, of.msgID, of.exchange)
	}
	if h.IsInitiator() != strings.Contains(of.flags, "I") || h.IsResponse() != strings.Contains(of.flags, "R") {
		t.Errorf("frame %d: flags %#x, tcpdump says [%s]", of.frame, h.Flags, of.flags)
	}
	if len(m.Payloads) != len(of.payloads) {
		t.Fatalf("frame %d: %d payloads, tcpdump shows %d", of.frame, len(m.Payloads), len(of.payloads))
	}
	for i, op := range of.payloads {
		p := m.Payloads[i]
		if p.Type() != op.typ {
			t.Errorf("frame %d payload %d: %v, tcpdump shows %v", of.frame, i, p.Type(), op.typ)
			continue
		}
		switch q := p.(type) {
		case *SA:
			if n := len(q.AppendBody(nil)); n != op.length {
				t.Errorf("frame %d: SA body %d octets, tcpdump says len=%d", of.frame, n, op.length)
			}
			if len(q.Proposals) != len(op.proposals) {
				t.Fatalf("frame %d: %d proposals, tcpdump shows %d", of.frame, len(q.Proposals), len(op.proposals))
			}
			for j, pr := range op.proposals {
				got := q.Proposals[j]
				if int(got.Num) != pr.num || got.Protocol != ProtoIKE || len(got.Transforms) != pr.count {
					t.Errorf("frame %d proposal %d: num %d proto %v %d transforms", of.frame, j, got.Num, got.Protocol, len(got.Transforms))
				}
				if !equalTransforms(got.Transforms, pr.transforms) {
					t.Errorf("frame %d proposal %d: transforms\n%+v\ntcpdump\n%+v", of.frame, j, got.Transforms, pr.transforms)
				}
			}
		case *KE:
			if len(q.Data) != op.length {
				t.Errorf("frame %d: KE data %d, tcpdump len=%d", of.frame, len(q.Data), op.length)
			}
			checkHex(t, of.frame, "KE", q.Data, op.data)
		case *Nonce:
			if len(q.Data) != op.length {
				t.Errorf("frame %d: nonce %d, tcpdump len=%d", of.frame, len(q.Data), op.length)
			}
			checkHex(t, of.frame, "nonce", q.Data, op.data)
		case *Notify:
			if int(q.NotifyType) != op.notify {
				t.Errorf("frame %d: notify %v, tcpdump type=%d", of.frame, q.NotifyType, op.notify)
			}
			checkHex(t, of.frame, "notify", q.Data, op.data)
		case *SK:
			if len(q.Body) != op.length {
				t.Errorf("frame %d: SK body %d, tcpdump len=%d", of.frame, len(q.Body), op.length)
			}
			checkHex(t, of.frame, "SK", q.Body, op.data)
		case *Vendor:
			if len(q.Data) != op.length {
				t.Errorf("frame %d: vendor %d, tcpdump len=%d", of.frame, len(q.Data), op.length)
			}
			checkHex(t, of.frame, "vendor", q.Data, op.data)
		}
	}
}

func checkHex(t *testing.T, frame int, what string, got []byte, want string) {
	t.Helper()
	if want != "" && hex.EncodeToString(got) != want {
		t.Errorf("frame %d: %s %x, tcpdump %s", frame, what, got, want)
	}
}

func equalTransforms(a, b []Transform) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].ID != b[i].ID || a[i].KeyLength() != b[i].KeyLength() || len(a[i].Attrs) != len(b[i].Attrs) {
			return false
		}
	}
	return true
}

func TestCaptureIKEv2Four(t *testing.T) {
	dgrams := readUDP(t, "testdata/ikev2four.pcap")
	out := readOut(t, "testdata/ikev2four.out")
	if len(dgrams) != 21 || len(out) != 21 {
		t.Fatalf("%d datagrams, %d frames in .out; want 21", len(dgrams), len(out))
	}
	var cookies [][]byte
	for i, d := range dgrams {
		b, kind := d.ike()
		if kind != kindIKE {
			t.Fatalf("frame %d is not IKE", d.frame)
		}
		m, err := ParseMessage(b)
		if err != nil {
			t.Fatalf("frame %d: %v", d.frame, err)
		}
		checkAgainstOut(t, m, out[i])
		// Everything in this capture is canonical: re-encoding gives the same octets.
		if enc := m.Append(nil); !bytes.Equal(enc, b) {
			t.Errorf("frame %d: re-encoding differs", d.frame)
		}
		if n := FindNotify(m.Payloads, COOKIE); n != nil {
			cookies = append(cookies, n.Data)
		}
	}
	// The COOKIE round trip: frame 2 (response) sends it, frame 3 (request) returns it first.
	want := hx("00000001c2221e50c16e123f2b0c71aefcf0cb3b798782c6") // as tcpdump prints frame 2's
	if len(cookies) != 2 || !bytes.Equal(cookies[0], want) || !bytes.Equal(cookies[1], cookies[0]) {
		t.Fatalf("cookies %x", cookies)
	}
	m3, _ := ParseMessage(mustIKE(t, dgrams[2]))
	if _, ok := m3.Payloads[0].(*Notify); !ok {
		t.Error("COOKIE is not the first payload of the retried IKE_SA_INIT")
	}
}

func mustIKE(t *testing.T, d udpDatagram) []byte {
	b, kind := d.ike()
	if kind != kindIKE {
		t.Fatalf("frame %d is not IKE", d.frame)
	}
	return b
}

func TestCaptureIKEv2pI2(t *testing.T) {
	dgrams := readUDP(t, "testdata/ikev2pI2.pcap")
	out := readOut(t, "testdata/ikev2pI2.out")
	if len(dgrams) != 2 || len(out) != 2 {
		t.Fatalf("%d datagrams, %d frames in .out", len(dgrams), len(out))
	}
	for i, d := range dgrams {
		b := mustIKE(t, d)
		m, err := ParseMessage(b)
		if err != nil {
			t.Fatalf("frame %d: %v", d.frame, err)
		}
		checkAgainstOut(t, m, out[i])
		if m.Header.SPIi != 0x0001020304050607 {
			t.Errorf("SPIi %x", m.Header.SPIi)
		}
		// SA and Nonce carry the critical bit, which is not kept for known payloads:
		// re-encoding only clears bits, and decodes to the same message.
		enc := m.Append(nil)
		if !onlyClearsBits(enc, b) {
			t.Errorf("frame %d: re-encoding sets bits", d.frame)
		}
		if m2, err := ParseMessage(enc); err != nil || !reflect.DeepEqual(m, m2) {
			t.Errorf("frame %d: re-encoded message decodes differently (%v)", d.frame, err)
		}
	}
	m1, _ := ParseMessage(mustIKE(t, dgrams[0]))
	if sa := Find[*SA](m1.Payloads); sa == nil || len(sa.Proposals) != 6 {
		t.Fatalf("IKE_SA_INIT SA %#v", sa)
	}
	if b := hx(`
		22 80 00 f4`); !bytes.Equal(mustIKE(t, dgrams[0])[28:32], b) {
		t.Error("capture changed: the SA payload should carry the critical bit")
	}
	m2, _ := ParseMessage(mustIKE(t, dgrams[1]))
	sk := Find[*SK](m2.Payloads)
	if sk == nil || sk.InnerNext != PayloadIDi || m2.Header.SPIr != 0xc02e7a3031a03188 {
		t.Fatalf("IKE_AUTH %#v", m2)
	}
}

func TestCaptureIDPayloads(t *testing.T) {
	// tcpdump's "normal" capture has an IDi of type ID_IPV4_ADDR with one octet of data
	// (and 39 octets of junk after the chain); the "short" one an IDi of 5 octets.
	for _, tc := range []struct{ file, reason string }{
		{"ikev2-id-normal.pcap", "ID_IPV4_ADDR data is 1 octets, want 4"},
		{"ikev2-id-short.pcap", "body is 1 octets, want at least 4"},
	} {
		dgrams := readUDP(t, "testdata/"+tc.file)
		if len(dgrams) != 1 {
			t.Fatalf("%s: %d datagrams", tc.file, len(dgrams))
		}
		b := mustIKE(t, dgrams[0])
		h, err := ParseHeader(b)
		if err != nil || h.Exchange != IKE_AUTH || h.MessageID != 1 || h.NextPayload != PayloadIDi {
			t.Fatalf("%s: header %+v %v", tc.file, h, err)
		}
		_, err = ParseMessage(b)
		var we *Error
		if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX || we.Payload != PayloadIDi || we.Reason != tc.reason {
			t.Errorf("%s: %v", tc.file, err)
		}
	}
}

func TestCaptureMalformed(t *testing.T) {
	dgrams := readUDP(t, "testdata/ikev2pI2-segfault.pcapng")
	if len(dgrams) != 1 {
		t.Fatalf("%d datagrams", len(dgrams))
	}
	_, err := ParseMessage(mustIKE(t, dgrams[0]))
	var we *Error
	if !errors.As(err, &we) || we.Notify != INVALID_SYNTAX {
		t.Fatalf("err %v", err)
	}
	// Every truncation of every capture message fails cleanly (or parses, for the
	// complete one), never panics.
	for _, msg := range captureMessages(t) {
		for n := 0; n < len(msg); n++ {
			if _, err := ParseMessage(msg[:n]); err == nil {
				t.Fatalf("truncated message of %d/%d octets parsed", n, len(msg))
			}
		}
	}
}

func TestCaptureIKEv1Rejected(t *testing.T) {
	dgrams := readUDP(t, "testdata/isakmp4500.pcap")
	counts := map[ikeKind]int{}
	for _, d := range dgrams {
		b, kind := d.ike()
		counts[kind]++
		if kind != kindIKE {
			continue
		}
		if _, err := ParseMessage(b); !isMajorVersionErr(err) {
			t.Errorf("frame %d: %v", d.frame, err)
		}
		h, err := ParseHeader(b)
		if !isMajorVersionErr(err) || h.Version != 0x10 {
			t.Errorf("frame %d: ParseHeader %v version %#x", d.frame, err, h.Version)
		}
	}
	// tcpdump's decoding: 15 ISAKMP messages, 8 ESP-in-UDP, 4 NAT keepalives.
	out, err := os.ReadFile("testdata/isakmp4.out")
	if err != nil {
		t.Fatal(err)
	}
	want := map[ikeKind]int{
		kindIKE:       bytes.Count(out, []byte("isakmp: ")),
		kindESP:       bytes.Count(out, []byte("UDP-encap: ESP")),
		kindKeepalive: bytes.Count(out, []byte("isakmp-nat-keep-alive")),
	}
	if counts[kindIKE] != want[kindIKE] || counts[kindESP] != want[kindESP] || counts[kindKeepalive] != want[kindKeepalive] || want[kindIKE] != 15 {
		t.Errorf("datagrams %v, tcpdump %v", counts, want)
	}

	n := 0
	for _, d := range readUDP(t, "testdata/isakmp-no-none-np.pcapng") {
		if b, kind := d.ike(); kind == kindIKE {
			n++
			if _, err := ParseMessage(b); !isMajorVersionErr(err) {
				t.Errorf("isakmp-no-none-np frame %d: %v", d.frame, err)
			}
		}
	}
	if n == 0 {
		t.Error("no ISAKMP message in isakmp-no-none-np.pcapng")
	}
}

func isMajorVersionErr(err error) bool {
	var we *Error
	return errors.As(err, &we) && we.Notify == INVALID_MAJOR_VERSION
}

// onlyClearsBits reports whether enc has b's length and differs from b only by bits
// that are set in b and clear in enc (reserved fields and critical bits written as 0).
func onlyClearsBits(enc, b []byte) bool {
	if len(enc) != len(b) {
		return false
	}
	for i := range enc {
		if enc[i]&^b[i] != 0 {
			return false
		}
	}
	return true
}
