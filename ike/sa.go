package ike

import (
	"errors"
	"net/netip"
	"time"

	ikecrypto "github.com/mobikevpn/mobikevpn/crypto"
	"github.com/mobikevpn/mobikevpn/mobike"
	"github.com/mobikevpn/mobikevpn/wire"
)

// saState is an IKE SA's position in its life.
//
//	initiator: initSent -> authSent -> established -> deleting -> (removed)
//	responder: initDone (half-open) -> established -> deleting -> (removed)
type saState int

//go:generate stringer -type=saState -linecomment

const (
	stateInitSent    saState = iota + 1 // connecting
	stateAuthSent                       // authenticating
	stateInitDone                       // half-open
	stateEstablished                    // established
	stateDeleting                       // deleting
	stateDead                           // dead
)

// IKESA is one IKE SA and its Child SAs.
type IKESA struct {
	id    uint64
	conn  *Conn
	state saState

	// initiator: we sent the IKE_SA_INIT request of this IKE SA (RFC 7296 role).
	initiator bool
	// origInitiator: we are the MOBIKE/R-MOBIKE "initiator", the one that started the
	// first IKE SA of a chain of rekeyed ones (draft-smyslov-ipsecme-ikev2-r-mobike 2).
	origInitiator bool

	spiI, spiR    uint64
	local, remote netip.AddrPort

	suite ikecrypto.IKESuite
	prf   *ikecrypto.PRF
	keys  ikecrypto.IKEKeys
	// im: the IKE_INTERMEDIATE exchanges before IKE_AUTH (intermediate.go).
	im     intermediate
	skIn   ikecrypto.SKCipher
	skOut  ikecrypto.SKCipher
	ni, nr []byte
	kex    ikecrypto.KeyExchange

	// initReq is the IKE_SA_INIT request as sent (initiator) or received (responder);
	// initResp the response as received or sent. Both are signed in AUTH.
	initReq, initResp []byte
	// initCopies (initiator) is the IKE_SA_INIT request as sent to each address tried.
	initCopies  []initCopy
	cookie      []byte // initiator: the responder's COOKIE to echo
	cookieTries int
	keTries     int
	initTried   int // number of IKE_SA_INIT attempts (new KE or cookie)

	halfKey halfOpenKey // responder: the index of the half-open SA
	// srcBlock is the source the half-open SA counts for (admission.proved/unproved);
	// provedCookie says its initiator returned a COOKIE.
	srcBlock     netip.Prefix
	provedCookie bool
	// charged is what admission.preauth counts for this SA.
	charged int
	// natLocal: the peer saw another address than ours, a NAT is in front of us.
	// natRemote: the peer's address is not what it says, a NAT in front of it, or a
	// peer that forces UDP encapsulation with a NAT_DETECTION_SOURCE_IP that cannot
	// match (as we do with encap).
	natLocal, natRemote bool

	localID, remoteID wire.ID
	peerKey           uint64 // the index of remoteID in Engine.byPeer; 0: not indexed

	mobike      bool // negotiated
	peerRMobike bool // the peer (initiator) advertised 'R'
	// peerRedirect (responder): the peer sent REDIRECT_SUPPORTED or REDIRECTED_FROM in
	// IKE_SA_INIT: it follows a REDIRECT (RFC 5685).
	peerRedirect bool
	// redirectedFrom (initiator): this SA was started because the gateway there
	// redirected us (REDIRECTED_FROM); replaces is the SA that redirect ends once this
	// one is up.
	redirectedFrom netip.Addr
	replaces       *IKESA
	// (The flags are kept together: the struct stays within a smaller size class.)
	fragment   bool // IKE fragmentation negotiated (RFC 7383)
	restarting bool // initiated to keep its connection up (keepup.go)
	held       bool // its requests are held: the host has no route to the peer (keepup.go)
	// host is the gateway's host name the initiator reached it by (hosts.go), or "".
	host string
	// redirectedAway (responder): we redirected the peer in IKE_AUTH (Drain); the SA,
	// with no Child SA, waits for the peer's Delete.
	redirectedAway bool
	// forgotten: Forget removes the SA, which lives on elsewhere: its virtual IPs
	// are not this engine's to hand out again.
	forgotten bool
	// sentInvalidSyntax: we answered a request of the established SA with
	// INVALID_SYNTAX, which ends the SA (RFC 7296 2.21.3).
	sentInvalidSyntax bool
	// handedOver: Export gave the SA to another engine. Nothing is sealed under its
	// keys any more, its datagrams are dropped and its timers do not run, until Forget
	// (see Engine.Export).
	handedOver bool
	// handingBack: HandBack (not Handoff) handed the SA over; Reclaim undoes it.
	handingBack bool
	// switchAnswered, peerStayed: after Handoff, the peer answered the switch request
	// here, and then sent a request here (see handedOverMessage).
	switchAnswered, peerStayed bool
	// stayFrom: the lowest message ID of a request that counts there (one the peer
	// sent before it saw the switch request came in before its answer).
	stayFrom uint32
	// eap is the EAP conversation while IKE_AUTH runs one (eapauth.go).
	eap *eapState
	// pm is the path manager of an established SA: where IKE and ESP go (MOBIKE).
	pm *mobike.Manager
	// authLocal/authRemote are the addresses of IKE_AUTH: what "dynamic" traffic
	// selectors mean without virtual IPs, whatever moves follow.
	authLocal, authRemote netip.AddrPort
	// initNATD (initiator): the NAT_DETECTION_DESTINATION_IP of the IKE_SA_INIT
	// response, when it describes the SA's path, until the path manager takes it.
	initNATD []byte
	// authAnnounced/authPeerAddrs: the additional addresses of IKE_AUTH, until the path
	// manager takes them.
	authAnnounced []netip.Addr

	vips    []netip.Addr // initiator: ours; responder: assigned to the peer
	vipDNS  []netip.Addr
	pool    *pool
	created time.Time
	estab   time.Time

	// win is the message-ID window: requests both ways, the cached answer, fragments.
	win window

	peerHashes []uint16  // the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427); nil: not sent
	lastRecv   time.Time // any authenticated message from the peer

	children []*ChildSA
	// firstChild is the Child SA negotiated in IKE_AUTH (initiator: its config).
	firstChild   *ChildConfig
	firstChildIn uint32 // initiator: the inbound SPI offered in IKE_AUTH

	// Rekeying. rekeying is our pending IKE SA rekey; collision is the new IKE SA the
	// peer created by rekeying this one meanwhile (RFC 7296 2.8.2); rekeyedTo is the
	// IKE SA that inherited this one's Child SAs.
	rekeying  *request
	rekeySPI  uint64 // our SPI for the IKE SA our pending rekey creates
	rekeyNi   []byte
	collision *IKESA
	rekeyedTo *IKESA
	// ni/nr of the exchange that created this IKE SA by rekeying (for collisions).
	createdNonces [2][]byte

	// Additional key exchanges after CREATE_CHILD_SA (RFC 9370, followup.go): addKE
	// is our series as initiator, followups the peer's series waiting for their next
	// IKE_FOLLOWUP_KE; stateNotFound counts our series in a row the peer lost.
	addKE         *addKEInit
	followups     []*followup
	stateNotFound int

	lingering []lingerSPI     // inbound SPIs of replaced Child SAs, removed a little later
	reserved  map[uint32]bool // inbound SPIs offered in requests still pending

	// timers
	halfOpenExpire time.Time
	dpdAt          time.Time
	rekeyAt        time.Time
	expireAt       time.Time // a rekeyed SA the peer never deleted is forgotten then
	wakeAt         time.Time
}

// request is an exchange we initiated and that waits for its response.
type request struct {
	exchange wire.ExchangeType
	payloads []wire.Payload // built when the request is sent
	msgID    uint32
	data     [][]byte // the message, or its fragments
	sentAt   time.Time
	tries    int
	nextAt   time.Time
	kind     requestKind
	onReply  func(e *Engine, now time.Time, sa *IKESA, msg *wire.Message)
	// check is the path manager's check this request carries (its reply goes there).
	check *mobike.Check
}

type requestKind int

const (
	reqInit requestKind = iota + 1
	reqAuth
	reqDPD
	reqDelete
	reqDeleteChild
	reqNotify
	reqRekeyChild
	reqCreateChild
	reqRekeyIKE
	reqUpdate // UPDATE_SA_ADDRESSES
	reqCheck  // return routability check
	reqSwitch
	reqOpaque // sealed by another node (a snapshot's pending request): its answer ends it
)

func (sa *IKESA) localSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *IKESA) header(ex wire.ExchangeType, msgID uint32, response bool) wire.Header {
	h := wire.Header{
		SPIi:      sa.spiI,
		SPIr:      sa.spiR,
		Version:   wire.Version,
		Exchange:  ex,
		MessageID: msgID,
	}
	if sa.initiator {
		h.Flags |= wire.FlagInitiator
	}
	if response {
		h.Flags |= wire.FlagResponse
	}
	return h
}

// errHandedOver refuses to seal a message of an SA that Export handed over.
var errHandedOver = errors.New("the IKE SA was exported to another engine")

// seal encodes payloads into a protected message.
func (sa *IKESA) seal(h wire.Header, payloads []wire.Payload) ([]byte, error) {
	if sa.handedOver {
		return nil, errHandedOver
	}
	inner, innerNext := encodeInner(payloads)
	return sa.sealInner(h, inner, innerNext)
}

// encodeInner encodes payloads as the content of an SK payload, and the type of the
// first.
func encodeInner(payloads []wire.Payload) ([]byte, wire.PayloadType) {
	next := wire.PayloadNone
	if len(payloads) > 0 {
		next = payloads[0].Type()
	}
	return wire.AppendPayloads(nil, payloads), next
}

// sealInner protects inner (payloads of which the first is innerNext) as one message.
func (sa *IKESA) sealInner(h wire.Header, inner []byte, innerNext wire.PayloadType) ([]byte, error) {
	bodyLen := sa.skOut.SealedLen(len(inner))
	b := make([]byte, 0, wire.HeaderLen+wire.GenericHeaderLen+bodyLen)
	b = wire.AppendSKHeader(b, h, innerNext, bodyLen)
	return sa.skOut.Seal(b, inner)
}

// open decrypts a protected message whose outer payloads were parsed into m.
func (sa *IKESA) open(data []byte, m *wire.Message) ([]wire.Payload, error) {
	if len(m.Payloads) == 0 {
		return nil, errNotProtected
	}
	sk, ok := m.Payloads[len(m.Payloads)-1].(*wire.SK)
	if !ok {
		return nil, errNotProtected
	}
	aad := data[:len(data)-len(sk.Body)]
	plain, err := sa.skIn.Open(aad, sk.Body)
	if err != nil {
		return nil, err
	}
	sa.im.noteInner(sa, plain, sk.InnerNext)
	return wire.ParsePayloads(sk.InnerNext, plain)
}
