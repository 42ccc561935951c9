package ike

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// Tests of the SA state: an established IKE SA exported from one gateway engine (A)
// and imported into another (B, at another address), as the gateway cluster will.

const (
	stateIKE = "aes128gcm16-prfsha256-x25519"
	stateESP = "aes128gcm16"
)

// clusterGateway is the gateway configuration both nodes share: each serves both
// nodes' addresses and announces them, and keeps what Export needs.
func clusterGateway(t testing.TB) Config {
	cfg := gatewayConfig(t, stateIKE, stateESP)
	cfg.Connections[0].LocalAddrs = []netip.Addr{gwAddr, gwAddr2}
	cfg.Connections[0].Announce = mobike.Announce{Mode: mobike.Auto, List: []netip.Addr{gwAddr, gwAddr2}}
	cfg.Exportable = true
	return cfg
}

// clusterPair establishes a client with gateway A (at gwAddr); gateway B (at gwAddr2,
// same configuration, no SAs) is on the network too.
func clusterPair(t *testing.T) (n *testNet, a, b, cl *endpoint) {
	t.Helper()
	n = newTestNet(t)
	a = n.add("gateway-a", gwAddr, clusterGateway(t))
	cc := clientConfig(t, stateIKE, stateESP)
	cc.Connections[0].SwitchAccept = mobike.SwitchPolicy{Additional: true}
	cl = n.add("client", clientAddr, cc)
	b = n.add("gateway-b", gwAddr2, clusterGateway(t))
	n.apply(cl, cl.e.StartAll(n.now))
	if !n.run(time.Minute, established(a, cl)) {
		t.Fatalf("not established: %v %v", cl.events, a.events)
	}
	return n, a, b, cl
}

// roundTrip encodes st, decodes it and checks that encoding again gives the same bytes.
func roundTrip(t *testing.T, st SAState) SAState {
	t.Helper()
	enc, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSAState(enc)
	if err != nil {
		t.Fatalf("decoding an encoded state: %v", err)
	}
	again, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, again) {
		t.Fatalf("the state does not round-trip:\n%s\n%s", enc, again)
	}
	return got
}

func exchangesTo(ep *endpoint, to netip.Addr, ex wire.ExchangeType, response bool) int {
	c := 0
	for _, d := range ep.sent {
		if h, err := wire.ParseHeader(d.data); err == nil && d.to.Addr() == to && h.Exchange == ex && h.IsResponse() == response {
			c++
		}
	}
	return c
}

// TestImportedSAContinues moves the gateway's SA from A to B the way a cluster will: A
// asks the client to switch to B's address (R-MOBIKE), its window is free once the
// client answered, A exports, B imports, A forgets, and the client's
// UPDATE_SA_ADDRESSES arrives at B. B then carries on with everything.
func TestImportedSAContinues(t *testing.T) {
	n, a, b, cl := clusterPair(t)
	saA := onlySA(t, a)
	if _, acts, err := a.e.Switch(n.now, SwitchSelector{All: true}, gwAddr2); err != nil {
		t.Fatal(err)
	} else {
		n.apply(a, acts)
	}
	// A's SWITCH_TO_IP_ADDRESS is answered; the client's UPDATE_SA_ADDRESSES to B's
	// address is on its way.
	if !n.run(10*time.Second, func() bool {
		return saA.win.pending == nil && len(saA.win.queue) == 0 && saA.win.nextReqID > 0 && len(n.inflight) > 0
	}) {
		t.Fatal("the switch request was not answered")
	}
	st, err := a.e.Export(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.NextRequestID != saA.win.nextReqID || st.PeerRequestID != saA.win.peerReqID || st.Path.SwitchTo != gwAddr2 {
		t.Fatalf("exported windows %d/%d, switch to %v", st.NextRequestID, st.PeerRequestID, st.Path.SwitchTo)
	}
	st = roundTrip(t, st)
	idB, acts, err := b.e.Import(n.now, st)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	if c, _ := ikecrypto.SealCounter(b.e.store.byID[idB].skOut); c != st.SealCounter || c == 0 {
		t.Errorf("B's SK IV counter is at %d, A's was at %d", c, st.SealCounter)
	}
	if len(b.inbound) != 1 || len(b.outbound) != 1 {
		t.Fatalf("B installed %d inbound and %d outbound SAs", len(b.inbound), len(b.outbound))
	}
	forget, err := a.e.Forget(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, forget)
	if len(a.inbound) != 0 || len(a.outbound) != 0 || len(a.e.Status(n.now)) != 0 {
		t.Fatal("A kept something of the SA it forgot")
	}
	if a.hasEvent(EventDeleted) != nil {
		t.Error("forgetting an SA reported it deleted")
	}
	aSent := len(a.sent)
	inv := makeBeforeBreak(t, n, b, cl)
	n.runChecked(10*time.Second, inv)
	flowsAt(t, b, cl, clientAddr, gwAddr2)
	if b.hasEvent(EventSwitched) == nil {
		t.Error("B did not see the switch complete")
	}

	// A liveness check from B is answered by the client.
	saB := b.e.store.byID[idB]
	reqs, resps := exchangesTo(b, clientAddr, wire.INFORMATIONAL, false), exchangesTo(cl, gwAddr2, wire.INFORMATIONAL, true)
	b.e.livenessCheck(n.now, saB)
	b.e.schedule(saB)
	n.apply(b, b.e.take())
	n.runChecked(10*time.Second, inv)
	if exchangesTo(b, clientAddr, wire.INFORMATIONAL, false) != reqs+1 || exchangesTo(cl, gwAddr2, wire.INFORMATIONAL, true) != resps+1 || saB.win.pending != nil {
		t.Fatalf("B's liveness check: pending %v", saB.win.pending)
	}
	// And the client's, answered by B.
	saC := onlySA(t, cl)
	cl.e.livenessCheck(n.now, saC)
	n.apply(cl, cl.e.take())
	n.runChecked(10*time.Second, inv)
	if saC.win.pending != nil || exchangesTo(b, clientAddr, wire.INFORMATIONAL, true) < 2 {
		t.Fatal("the client's liveness check was not answered by B")
	}

	// Child SA rekeys, by B and by the client.
	oldSPI := saB.children[0].spiIn
	n.apply(b, b.e.RekeyChild(n.now, oldSPI))
	n.runChecked(time.Minute, inv)
	oneChildEach(t, n, b, cl)
	if saB.children[0].spiIn == oldSPI {
		t.Fatal("B's Child SA rekey did not happen")
	}
	oldSPI = saC.children[0].spiIn
	n.apply(cl, cl.e.RekeyChild(n.now, oldSPI))
	n.runChecked(time.Minute, inv)
	oneChildEach(t, n, b, cl)
	if saC.children[0].spiIn == oldSPI {
		t.Fatal("the client's Child SA rekey did not happen")
	}

	// An IKE SA rekey by B.
	n.apply(b, b.e.RekeyIKE(n.now, idB))
	n.runChecked(time.Minute, inv)
	if b.hasEvent(EventRekeyed) == nil || cl.hasEvent(EventRekeyed) == nil {
		t.Fatalf("IKE SA rekey: B %v, client %v", b.events, cl.events)
	}
	oneChildEach(t, n, b, cl)
	flowsAt(t, b, cl, clientAddr, gwAddr2)

	// A Delete by B ends both ends.
	newB := b.e.Status(n.now)[0].ID
	acts, err = b.e.Delete(n.now, newB)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	n.run(time.Minute, nil) // (no make-before-break here: the flow ends)
	if len(b.e.Status(n.now)) != 0 || len(cl.e.Status(n.now)) != 0 {
		t.Fatalf("after the Delete: B %d SAs, client %d", len(b.e.Status(n.now)), len(cl.e.Status(n.now)))
	}
	if cl.hasEvent(EventDeleted) == nil {
		t.Error("the client saw no Delete")
	}
	if cl.hasEvent(EventFailed) != nil {
		t.Errorf("client events: %v", cl.events)
	}
	// Nothing came from A after it forgot the SA, and nothing from B left from an
	// address B does not have.
	if len(a.sent) != aSent {
		t.Errorf("A sent %d datagrams after it forgot the SA", len(a.sent)-aSent)
	}
	for _, d := range b.sent {
		if d.from.Addr() != gwAddr2 {
			t.Errorf("B sent from %v", d.from)
		}
	}
	if len(b.e.pools["rw"].inUse) != 0 {
		t.Error("B kept the virtual IP leased after the Delete")
	}
}

// TestImportAnswersRetransmission: the client's last request, answered by A, is
// retransmitted to B after the move; B answers it with A's response, byte for byte,
// and does not process it again.
func TestImportAnswersRetransmission(t *testing.T) {
	n, a, b, cl := clusterPair(t)
	saC := onlySA(t, cl)
	// A request of the client with content: a Child SA rekey (its CREATE_CHILD_SA).
	n.apply(cl, cl.e.RekeyChild(n.now, saC.children[0].spiIn))
	n.run(time.Minute, nil)
	var req, resp datagram
	for _, d := range cl.sent {
		if h, _ := wire.ParseHeader(d.data); !h.IsResponse() {
			req = d
		}
	}
	for _, d := range a.sent {
		if h, _ := wire.ParseHeader(d.data); h.IsResponse() {
			resp = d
		}
	}
	st, err := a.e.Export(n.now, onlySA(t, a).id)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.LastResponse) != 1 || !bytes.Equal(st.LastResponse[0], resp.data) {
		t.Fatal("the state does not hold A's last response")
	}
	_, acts, err := b.e.Import(n.now, roundTrip(t, st))
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	before := len(b.inbound)
	from := netip.AddrPortFrom(gwAddr2, req.to.Port())
	n.driver(b).HandleDatagram(n.now, Datagram{Local: from, Remote: req.from, Data: req.data})
	if len(b.sent) != 1 || !bytes.Equal(b.sent[0].data, resp.data) || b.sent[0].to != req.from {
		t.Fatalf("B's answer to the retransmission: %d datagrams, same bytes as A's: %v", len(b.sent), len(b.sent) == 1 && bytes.Equal(b.sent[0].data, resp.data))
	}
	if len(b.inbound) != before || b.e.Drops().Retransmits.Load() != 1 {
		t.Error("B processed the retransmitted request again")
	}
}

// TestSAStateSecretsRedacted: keys never show when a state is formatted or logged.
func TestSAStateSecretsRedacted(t *testing.T) {
	n, a, _, _ := clusterPair(t)
	st, err := a.e.Export(n.now, onlySA(t, a).id)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	logged.Write(js)
	for _, h := range []slog.Handler{slog.NewTextHandler(&logged, nil), slog.NewJSONHandler(&logged, nil)} {
		l := slog.New(h)
		l.Info("state", "st", st, "child", st.Children[0], "key", st.Keys.SKd, "keys", st.Keys, "in", st.Children[0].In)
	}
	out := fmt.Sprintf("%v %+v %#v %s %x %q %v %+v %#v", st, st, st, st.Keys.SKei, st.Keys.SKei, st.Keys.SKei, st.Children, st.Children[0], st.Keys) + logged.String()
	secrets := []Secret{st.Keys.SKd, st.Keys.SKei, st.Keys.SKer, st.Keys.SKpi, st.Keys.SKpr,
		st.Children[0].In.Encr, st.Children[0].Out.Encr}
	for _, s := range secrets {
		if len(s) == 0 {
			t.Fatal("a key is missing from the state")
		}
		for _, form := range []string{hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), string(s),
			strings.Trim(fmt.Sprint([]byte(s)), "[]")} {
			if strings.Contains(out, form) {
				t.Fatalf("a key shows in formatted or logged output: %s", out)
			}
		}
	}
	if !strings.Contains(out, "[secret: 16 bytes]") && !strings.Contains(out, "[secret: 20 bytes]") {
		t.Errorf("no redaction marker in %s", out)
	}
	// The encoding holds them: it is what moves the SA.
	enc, _ := st.Encode()
	if !bytes.Contains(enc, []byte(base64.StdEncoding.EncodeToString(st.Keys.SKd))) {
		t.Error("the encoding lacks SK_d")
	}
}

// TestImportRefusals: each refusal names its reason and changes nothing.
func TestImportRefusals(t *testing.T) {
	n, a, b, _ := clusterPair(t)
	saA := onlySA(t, a)
	// Export refuses an SA with an exchange in flight, and says which.
	a.e.livenessCheck(n.now, saA)
	n.apply(a, a.e.take())
	if _, err := a.e.Export(n.now, saA.id); !errors.Is(err, ErrExchangeInFlight) || !strings.Contains(err.Error(), "INFORMATIONAL request (message ID") {
		t.Errorf("export with a request in flight: %v", err)
	}
	n.run(10*time.Second, func() bool { return saA.win.pending == nil })
	st, err := a.e.Export(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	clone := func(f func(s *SAState)) SAState {
		s := roundTrip(t, st)
		if f != nil {
			f(&s)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		into *endpoint
		st   SAState
		want string
	}{
		{"unknown connection", b, clone(func(s *SAState) { s.Conn = "elsewhere" }), `connection "elsewhere" is not configured here`},
		{"unknown child", b, clone(func(s *SAState) { s.Children[0].Name = "other" }), `no Child SA "other"`},
		{"IKE SPI in use", a, st, "SPI collision: IKE SPI"},
		{"ESP SPI in use", a, clone(func(s *SAState) { s.SPIr ^= 1 }), "SPI collision: inbound ESP SPI"},
		{"auth method", b, clone(func(s *SAState) { s.RemoteAuth = AuthPubkey }), "authenticates psk/psk here"},
		{"short key", b, clone(func(s *SAState) { s.Keys.SKei = s.Keys.SKei[:8] }), "SK_ei of 8 octets"},
		{"child key", b, clone(func(s *SAState) { s.Children[0].In.Encr = nil }), `keys of Child SA "net": 0`},
		{"VIP outside the pools", b, clone(func(s *SAState) { s.VIPs = []netip.Addr{netip.MustParseAddr("10.9.9.9")} }), "virtual IP 10.9.9.9 is in no pool"},
		{"zero SPI", b, clone(func(s *SAState) { s.SPIi = 0 }), "zero IKE SPI"},
		{"version", b, clone(func(s *SAState) { s.Version = 2 }), "version 2"},
	} {
		e := tc.into.e
		before, spis, sas, leased := len(e.store.byID), len(e.store.spisIn), len(e.store.sas), len(e.pools["rw"].inUse)
		_, acts, err := e.Import(n.now, tc.st)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if len(acts) != 0 || len(e.store.byID) != before || len(e.store.spisIn) != spis || len(e.store.sas) != sas || len(e.pools["rw"].inUse) != leased {
			t.Errorf("%s: the refused import changed something", tc.name)
		}
	}
	// The virtual IP leased to someone else: B takes the SA once, then a copy under
	// other SPIs.
	_, acts, err := b.e.Import(n.now, st)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(b, acts)
	dup := clone(func(s *SAState) { s.SPIr ^= 1; s.Children[0].SPIIn ^= 1 })
	if _, _, err := b.e.Import(n.now, dup); err == nil || !strings.Contains(err.Error(), "virtual IP 198.18.100.1 is leased to someone else") {
		t.Errorf("VIP in use: %v", err)
	}

	if _, err := a.e.Export(n.now, 999); err == nil || !strings.Contains(err.Error(), "no IKE SA #999") {
		t.Errorf("export of an unknown SA: %v", err)
	}
	// An engine that does not keep Child SA keys cannot export.
	n2, gw, cl := pair(t, stateIKE, stateESP, nil)
	if !n2.run(time.Minute, established(gw, cl)) {
		t.Fatal("not established")
	}
	if _, err := gw.e.Export(n2.now, onlySA(t, gw).id); err == nil || !strings.Contains(err.Error(), "Exportable") {
		t.Errorf("export without Exportable: %v", err)
	}
}

func TestDecodeSAStateRefusals(t *testing.T) {
	n, a, _, _ := clusterPair(t)
	st, err := a.e.Export(n.now, onlySA(t, a).id)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"future version", bytes.Replace(enc, []byte(`"version":1,`), []byte(`"version":2,`), 1), "SA state version 2: unsupported SA state version (this engine reads version 1)"},
		{"no version", bytes.Replace(enc, []byte(`"version":1,`), nil, 1), "has no version"},
		{"unknown field", bytes.Replace(enc, []byte(`"version":1,`), []byte(`"version":1,"spare":3,`), 1), `unknown field "spare"`},
		{"not JSON", []byte("\x00"), "SA state"},
		{"trailing data", append(bytes.Clone(enc), []byte(" {}")...), "after top-level value"},
		{"reserved child SPI", bytes.Replace(enc, []byte(fmt.Sprintf(`"spi_in":%d`, st.Children[0].SPIIn)), []byte(`"spi_in":5`), 1), "reserved SPI"},
	} {
		_, err := DecodeSAState(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.name == "future version" && !errors.Is(err, ErrStateVersion) {
			t.Errorf("future version: %v does not wrap ErrStateVersion", err)
		}
	}
	bad := st
	bad.Version = 7
	if _, err := bad.Encode(); err == nil {
		t.Error("encoded a state of another version")
	}
}

// FuzzDecodeSAState: no input makes the decoder (or an import of what it accepts)
// panic, and whatever it accepts encodes to a stable form.
func FuzzDecodeSAState(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"conn":"rw"}`))
	f.Add([]byte(fuzzStateSeed))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeSAState(data)
		if err != nil {
			return
		}
		enc, err := st.Encode()
		if err != nil {
			return // e.g. a time JSON cannot hold
		}
		again, err := DecodeSAState(enc)
		if err != nil {
			t.Fatalf("re-decoding an encoded state: %v", err)
		}
		enc2, err := again.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding: %v\n%s\n%s", err, enc, enc2)
		}
		cfg := clusterGateway(t)
		cfg.Rand = seededRand(3)
		e := mustNew(t, cfg)
		id, _, err := e.Import(t0, st)
		if err == nil {
			e.Tick(t0.Add(time.Hour))
			e.Forget(t0.Add(time.Hour), id)
		}
	})
}

// fuzzStateSeed is a state that imports (its keys are not anyone's).
const fuzzStateSeed = `{"version":1,"conn":"rw","exported":"2026-11-26T12:00:01Z","spi_i":1311768467463790320,"spi_r":2541551405711093505,` +
	`"initiator":false,"orig_initiator":false,"local":"198.51.100.1:4500","remote":"192.0.2.10:4500","auth_local":"198.51.100.1:4500","auth_remote":"192.0.2.10:4500",` +
	`"suite":{"encr":20,"encr_key_bits":128,"integ":0,"prf":5,"dh":31},` +
	`"keys":{"sk_d":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sk_ai":"","sk_ar":"","sk_ei":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=","sk_er":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=",` +
	`"sk_pi":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sk_pr":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"seal_counter":3,"ni":"AQ==","nr":"Ag==",` +
	`"local_id":{"type":2,"data":"Z3cuZXhhbXBsZS5vcmc="},"remote_id":{"type":3,"data":"YWxpY2VAZXhhbXBsZS5vcmc="},"local_auth":"psk","remote_auth":"psk",` +
	`"nat_local":false,"nat_remote":true,"mobike":true,"peer_rmobike":true,"fragmentation":false,"peer_hashes":null,` +
	`"next_request_id":1,"peer_request_id":2,"last_response":null,"last_request_hash":null,"vips":["198.18.100.1"],"dns":["198.18.0.53"],"pool":"rw",` +
	`"created":"2026-11-26T12:00:00Z","established":"2026-11-26T12:00:00Z","last_recv":"2026-11-26T12:00:00Z","rekey_at":"0001-01-01T00:00:00Z","dpd_at":"2026-11-26T12:00:30Z",` +
	`"path":{"ike":{"local":"198.51.100.1:4500","remote":"192.0.2.10:4500"},"esp":{"local":"198.51.100.1:4500","remote":"192.0.2.10:4500"},` +
	`"peer_addrs":null,"announced":["203.0.113.1"],"announced_once":true,"used":null,"seen":null,"last_natd":null,` +
	`"verified":[{"addr":"192.0.2.10:4500","at":"0001-01-01T00:00:00Z"}],"switch_to":"","switch_since":"0001-01-01T00:00:00Z","switches":null,"left":null},` +
	`"children":[{"name":"net","spi_in":3000000000,"spi_out":3000000001,"suite":{"encr":20,"encr_key_bits":128,"integ":0,"dh":0,"esn":false},` +
	`"in":{"encr":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=","integ":""},"out":{"encr":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=","integ":""},` +
	`"local_ts":[{"type":7,"protocol":0,"start_port":0,"end_port":65535,"start":"198.18.0.0","end":"198.18.0.255"}],` +
	`"remote_ts":[{"type":7,"protocol":0,"start_port":0,"end_port":65535,"start":"198.18.100.1","end":"198.18.100.1"}],` +
	`"ni":"AQ==","nr":"Ag==","created":"2026-11-26T12:00:00Z","rekey_at":"0001-01-01T00:00:00Z",` +
	`"limits":{"soft_bytes":0,"soft_packets":0,"hard_bytes":0,"hard_packets":0},"expired":false,"out_seq":10,"in_seq":9}]}`

func TestFuzzStateSeedImports(t *testing.T) {
	st, err := DecodeSAState([]byte(fuzzStateSeed))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clusterGateway(t)
	cfg.Rand = seededRand(3)
	e := mustNew(t, cfg)
	_, acts, err := e.Import(t0, st)
	if err != nil {
		t.Fatal(err)
	}
	var in, out bool
	for _, a := range acts {
		switch a := a.(type) {
		case InstallInbound:
			in = a.Seq == 9
		case InstallOutbound:
			out = a.Seq == 10
		}
	}
	if !in || !out {
		t.Errorf("the sequence numbers did not reach the datapath: %v", acts)
	}
}

// TestExportHandsOver: after Export the exporter sends nothing under the SA's keys
// (timers, the peer's requests, commands), so the importer's IV counter and message
// IDs stay the only ones; a failed hand-over is rolled back by Forget and Import.
func TestExportHandsOver(t *testing.T) {
	n, a, _, cl := clusterPair(t)
	saA, saC := onlySA(t, a), onlySA(t, cl)
	st, err := a.e.Export(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	sent := len(a.sent)
	// The client's liveness check reaches A and is dropped; so are its retransmissions.
	cl.e.livenessCheck(n.now, saC)
	n.apply(cl, cl.e.take())
	n.run(10*time.Second, nil)
	n.apply(a, a.e.RekeyIKE(n.now, saA.id))
	n.apply(a, a.e.RekeyChild(n.now, saA.children[0].spiIn))
	n.run(5*time.Second, nil)
	if len(a.sent) != sent {
		t.Fatalf("A sent %d datagrams for an SA it exported", len(a.sent)-sent)
	}
	if saC.win.pending == nil {
		t.Fatal("the client's liveness check was answered")
	}
	if _, err := a.e.Export(n.now, saA.id); err == nil || !strings.Contains(err.Error(), "exported already") {
		t.Fatalf("exporting again: %v", err)
	}
	// The hand-over failed: A takes the SA back from the state.
	acts, err := a.e.Forget(n.now, saA.id)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, acts)
	id, acts, err := a.e.Import(n.now, st)
	if err != nil {
		t.Fatal(err)
	}
	n.apply(a, acts)
	if !n.run(time.Minute, func() bool { return saC.win.pending == nil }) {
		t.Fatal("the client's liveness check was never answered after the roll-back")
	}
	if cl.hasEvent(EventDeleted) != nil || !a.e.Established(id) {
		t.Fatalf("after the roll-back: client events %v", cl.events)
	}
	checkChildPair(t, a, cl)
	// A Delete of an exported SA (here: shutdown) forgets it without a word.
	if _, err := a.e.Export(n.now, id); err != nil {
		t.Fatal(err)
	}
	for _, act := range a.e.DeleteAll(n.now) {
		if _, ok := act.(Send); ok {
			t.Error("deleting an exported SA sent something")
		}
	}
	if len(a.e.Status(n.now)) != 0 || a.e.Deleting() {
		t.Error("the exported SA was not forgotten at shutdown")
	}
}
