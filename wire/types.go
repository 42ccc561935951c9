// Package wire encodes and decodes IKEv2 messages (RFC 7296, RFC 4555, RFC 7383 and
// draft-smyslov-ipsecme-ikev2-r-mobike) as pure functions from bytes to structs and back.
package wire

import "net/netip"

// ExchangeType is the IKE header's Exchange Type (RFC 7296 3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKE_SA_INIT        ExchangeType = 34
	IKE_AUTH           ExchangeType = 35
	CREATE_CHILD_SA    ExchangeType = 36
	INFORMATIONAL      ExchangeType = 37
	IKE_SESSION_RESUME ExchangeType = 38 // RFC 5723
	IKE_INTERMEDIATE   ExchangeType = 43 // RFC 9242
	IKE_FOLLOWUP_KE    ExchangeType = 44 // RFC 9370
)

// Flags are the IKE header flags.
type Flags uint8

// Header flag bits (RFC 7296 3.1).
const (
	FlagInitiator Flags = 0x08
	FlagVersion   Flags = 0x10
	FlagResponse  Flags = 0x20
)

// Version is the only IKE version this package produces (major 2, minor 0).
const Version uint8 = 0x20

// HeaderLen is the length of the fixed IKE header.
const HeaderLen = 28

// GenericHeaderLen is the length of the generic payload header.
const GenericHeaderLen = 4

// Header is the fixed IKE header.
type Header struct {
	SPIi, SPIr  uint64
	NextPayload PayloadType
	Version     uint8
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the Response flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set (sender is the IKE SA's initiator).
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// PayloadType is the Next Payload value identifying a payload (RFC 7296 3.2).
type PayloadType uint8

// Payload types.
const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadNotify  PayloadType = 41
	PayloadDelete  PayloadType = 42
	PayloadVendor  PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadSKF     PayloadType = 53 // RFC 7383 Encrypted Fragment
)

// ProtocolID identifies the security protocol in proposals, notifies and deletes.
type ProtocolID uint8

// Protocol IDs.
const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

// TransformType is the type of a transform substructure (RFC 7296 3.3.2).
type TransformType uint8

// Transform types.
const (
	TransformENCR  TransformType = 1
	TransformPRF   TransformType = 2
	TransformINTEG TransformType = 3
	TransformDH    TransformType = 4 // Key Exchange Method
	TransformESN   TransformType = 5
	// Additional Key Exchange 1..7 (RFC 9370) are TransformADDKE1..TransformADDKE1+6.
	TransformADDKE1 TransformType = 6
	TransformADDKE7 TransformType = 12
)

// Transform IDs for ENCR (IANA "Transform Type 1").
const (
	ENCR_3DES              uint16 = 3
	ENCR_NULL              uint16 = 11
	ENCR_AES_CBC           uint16 = 12
	ENCR_AES_CTR           uint16 = 13
	ENCR_AES_CCM_8         uint16 = 14
	ENCR_AES_CCM_12        uint16 = 15
	ENCR_AES_CCM_16        uint16 = 16
	ENCR_AES_GCM_8         uint16 = 18
	ENCR_AES_GCM_12        uint16 = 19
	ENCR_AES_GCM_16        uint16 = 20
	ENCR_CHACHA20_POLY1305 uint16 = 28
)

// Transform IDs for PRF.
const (
	PRF_HMAC_MD5      uint16 = 1
	PRF_HMAC_SHA1     uint16 = 2
	PRF_AES128_XCBC   uint16 = 4
	PRF_HMAC_SHA2_256 uint16 = 5
	PRF_HMAC_SHA2_384 uint16 = 6
	PRF_HMAC_SHA2_512 uint16 = 7
)

// Transform IDs for INTEG.
const (
	AUTH_NONE              uint16 = 0
	AUTH_HMAC_MD5_96       uint16 = 1
	AUTH_HMAC_SHA1_96      uint16 = 2
	AUTH_AES_XCBC_96       uint16 = 5
	AUTH_HMAC_SHA2_256_128 uint16 = 12
	AUTH_HMAC_SHA2_384_192 uint16 = 13
	AUTH_HMAC_SHA2_512_256 uint16 = 14
)

// Transform IDs for key exchange methods (Transform Type 4): Diffie-Hellman groups,
// then KEMs.
const (
	DH_NONE     uint16 = 0
	DH_MODP1024 uint16 = 2
	DH_MODP1536 uint16 = 5
	DH_MODP2048 uint16 = 14
	DH_MODP3072 uint16 = 15
	DH_MODP4096 uint16 = 16
	DH_ECP256   uint16 = 19
	DH_ECP384   uint16 = 20
	DH_ECP521   uint16 = 21
	DH_X25519   uint16 = 31
	DH_X448     uint16 = 32

	// ML-KEM (FIPS 203) key encapsulation, IANA "ml-kem-512", "ml-kem-768",
	// "ml-kem-1024" (draft-ietf-ipsecme-ikev2-mlkem section 4). Not Diffie-Hellman:
	// the initiator's Key Exchange Data is an encapsulation key, the responder's a
	// ciphertext (section 2.1).
	KE_MLKEM512  uint16 = 35
	KE_MLKEM768  uint16 = 36
	KE_MLKEM1024 uint16 = 37
)

// Transform IDs for ESN.
const (
	ESN_NO  uint16 = 0
	ESN_YES uint16 = 1
)

// AttrKeyLength is the Key Length transform attribute type (TV format).
const AttrKeyLength uint16 = 14

// Attribute is a transform attribute. TV-format attributes (the AF bit set) carry a
// 16-bit Value; TLV-format ones carry Data.
type Attribute struct {
	Type  uint16 // without the AF bit
	TV    bool
	Value uint16
	Data  []byte
}

// Transform is one transform substructure.
type Transform struct {
	Type  TransformType
	ID    uint16
	Attrs []Attribute
}

// KeyLength returns the Key Length attribute in bits, or 0 when absent.
func (t *Transform) KeyLength() uint16 {
	for _, a := range t.Attrs {
		if a.Type == AttrKeyLength && a.TV {
			return a.Value
		}
	}
	return 0
}

// Proposal is one proposal substructure of an SA payload.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// IDType is the ID payload's ID Type.
type IDType uint8

// ID types.
const (
	ID_IPV4_ADDR   IDType = 1
	ID_FQDN        IDType = 2
	ID_RFC822_ADDR IDType = 3
	ID_IPV6_ADDR   IDType = 5
	ID_DER_ASN1_DN IDType = 9
	ID_DER_ASN1_GN IDType = 10
	ID_KEY_ID      IDType = 11
)

// AuthMethod is the AUTH payload's method.
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1
	AuthSharedKey        AuthMethod = 2
	AuthDSSSig           AuthMethod = 3
	AuthECDSA256         AuthMethod = 9
	AuthECDSA384         AuthMethod = 10
	AuthECDSA521         AuthMethod = 11
	AuthNULL             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

// CertEncoding is the CERT/CERTREQ encoding.
type CertEncoding uint8

// Certificate encodings.
const (
	CertX509Signature CertEncoding = 4
	CertHashURLX509   CertEncoding = 12
)

// TSType is a traffic selector type.
type TSType uint8

// Traffic selector types.
const (
	TS_IPV4_ADDR_RANGE TSType = 7
	TS_IPV6_ADDR_RANGE TSType = 8
)

// CfgType is the CP payload's configuration type.
type CfgType uint8

// Configuration types.
const (
	CFG_REQUEST CfgType = 1
	CFG_REPLY   CfgType = 2
	CFG_SET     CfgType = 3
	CFG_ACK     CfgType = 4
)

// Configuration attribute types (RFC 7296 3.15.1).
const (
	INTERNAL_IP4_ADDRESS uint16 = 1
	INTERNAL_IP4_NETMASK uint16 = 2
	INTERNAL_IP4_DNS     uint16 = 3
	INTERNAL_IP4_NBNS    uint16 = 4
	INTERNAL_IP4_DHCP    uint16 = 6
	APPLICATION_VERSION  uint16 = 7
	INTERNAL_IP6_ADDRESS uint16 = 8
	INTERNAL_IP6_DNS     uint16 = 10
	INTERNAL_IP6_DHCP    uint16 = 12
	INTERNAL_IP4_SUBNET  uint16 = 13
	SUPPORTED_ATTRIBUTES uint16 = 14
	INTERNAL_IP6_SUBNET  uint16 = 15
)

// NotifyType is a Notify Message Type.
type NotifyType uint16

// Notify message types: errors (below 16384) and status types.
const (
	UNSUPPORTED_CRITICAL_PAYLOAD NotifyType = 1
	INVALID_IKE_SPI              NotifyType = 4
	INVALID_MAJOR_VERSION        NotifyType = 5
	INVALID_SYNTAX               NotifyType = 7
	INVALID_MESSAGE_ID           NotifyType = 9
	INVALID_SPI                  NotifyType = 11
	NO_PROPOSAL_CHOSEN           NotifyType = 14
	INVALID_KE_PAYLOAD           NotifyType = 17
	AUTHENTICATION_FAILED        NotifyType = 24
	SINGLE_PAIR_REQUIRED         NotifyType = 34
	NO_ADDITIONAL_SAS            NotifyType = 35
	INTERNAL_ADDRESS_FAILURE     NotifyType = 36
	FAILED_CP_REQUIRED           NotifyType = 37
	TS_UNACCEPTABLE              NotifyType = 38
	INVALID_SELECTORS            NotifyType = 39
	UNACCEPTABLE_ADDRESSES       NotifyType = 40 // RFC 4555
	UNEXPECTED_NAT_DETECTED      NotifyType = 41 // RFC 4555
	TEMPORARY_FAILURE            NotifyType = 43
	CHILD_SA_NOT_FOUND           NotifyType = 44
	STATE_NOT_FOUND              NotifyType = 47 // RFC 9370

	INITIAL_CONTACT                     NotifyType = 16384
	SET_WINDOW_SIZE                     NotifyType = 16385
	ADDITIONAL_TS_POSSIBLE              NotifyType = 16386
	IPCOMP_SUPPORTED                    NotifyType = 16387
	NAT_DETECTION_SOURCE_IP             NotifyType = 16388
	NAT_DETECTION_DESTINATION_IP        NotifyType = 16389
	COOKIE                              NotifyType = 16390
	USE_TRANSPORT_MODE                  NotifyType = 16391
	HTTP_CERT_LOOKUP_SUPPORTED          NotifyType = 16392
	REKEY_SA                            NotifyType = 16393
	ESP_TFC_PADDING_NOT_SUPPORTED       NotifyType = 16394
	NON_FIRST_FRAGMENTS_ALSO            NotifyType = 16395
	MOBIKE_SUPPORTED                    NotifyType = 16396 // RFC 4555
	ADDITIONAL_IP4_ADDRESS              NotifyType = 16397 // RFC 4555
	ADDITIONAL_IP6_ADDRESS              NotifyType = 16398 // RFC 4555
	NO_ADDITIONAL_ADDRESSES             NotifyType = 16399 // RFC 4555
	UPDATE_SA_ADDRESSES                 NotifyType = 16400 // RFC 4555
	COOKIE2                             NotifyType = 16401 // RFC 4555
	NO_NATS_ALLOWED                     NotifyType = 16402 // RFC 4555
	AUTH_LIFETIME                       NotifyType = 16403 // RFC 4478
	MULTIPLE_AUTH_SUPPORTED             NotifyType = 16404 // RFC 4739
	ANOTHER_AUTH_FOLLOWS                NotifyType = 16405 // RFC 4739
	REDIRECT_SUPPORTED                  NotifyType = 16406 // RFC 5685
	REDIRECT                            NotifyType = 16407 // RFC 5685
	REDIRECTED_FROM                     NotifyType = 16408 // RFC 5685
	EAP_ONLY_AUTHENTICATION             NotifyType = 16417 // RFC 5998
	CHILDLESS_IKEV2_SUPPORTED           NotifyType = 16418 // RFC 6023
	IKEV2_MESSAGE_ID_SYNC_SUPPORTED     NotifyType = 16420 // RFC 6311
	IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED NotifyType = 16421 // RFC 6311
	IKEV2_MESSAGE_ID_SYNC               NotifyType = 16422 // RFC 6311
	IPSEC_REPLAY_COUNTER_SYNC           NotifyType = 16423 // RFC 6311
	IKEV2_FRAGMENTATION_SUPPORTED       NotifyType = 16430 // RFC 7383
	SIGNATURE_HASH_ALGORITHMS           NotifyType = 16431 // RFC 7427
	USE_PPK                             NotifyType = 16435 // RFC 8784
	INTERMEDIATE_EXCHANGE_SUPPORTED     NotifyType = 16438 // RFC 9242
	ADDITIONAL_KEY_EXCHANGE             NotifyType = 16441 // RFC 9370

	// SWITCH_TO_IP_ADDRESS is draft-smyslov-ipsecme-ikev2-r-mobike's notification.
	// IANA never assigned it a number; this is the project's one constant from the
	// private-use status range 40970-65535 (40960-40969 are used by libreswan and
	// strongSwan).
	SWITCH_TO_IP_ADDRESS NotifyType = 40970
)

// Hash algorithm identifiers of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427).
const (
	HashSHA1     uint16 = 1
	HashSHA2_256 uint16 = 2
	HashSHA2_384 uint16 = 3
	HashSHA2_512 uint16 = 4
	HashIdentity uint16 = 5 // RFC 8420
)

// RMOBIKEMarker is the single octet of MOBIKE_SUPPORTED data by which an initiator
// advertises draft-smyslov-ipsecme-ikev2-r-mobike.
const RMOBIKEMarker = 0x52

// IsError reports whether the notify type is an error type (below 16384).
func (t NotifyType) IsError() bool { return t < 16384 }

// Payload is one IKE payload. AppendBody appends the payload's body, everything
// after the generic payload header.
type Payload interface {
	Type() PayloadType
	AppendBody(b []byte) []byte
}

// SA is the Security Association payload.
type SA struct{ Proposals []Proposal }

// KE is the Key Exchange payload.
type KE struct {
	Group uint16
	Data  []byte
}

// ID is the IDi or IDr payload (Initiator selects which).
type ID struct {
	Initiator bool
	IDType    IDType
	Data      []byte
}

// Cert is the Certificate payload.
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// CertReq is the Certificate Request payload.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

// Auth is the Authentication payload.
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Nonce is the Ni or Nr payload.
type Nonce struct{ Data []byte }

// Notify is the Notify payload.
type Notify struct {
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType // Notify Message Type (named so because Type() is the Payload method)
	Data       []byte
}

// Delete is the Delete payload. For ProtoIKE it carries no SPIs; for ESP and AH every
// SPI is 4 octets.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

// Vendor is the Vendor ID payload.
type Vendor struct{ Data []byte }

// TrafficSelector is one traffic selector: an address range, port range and protocol.
type TrafficSelector struct {
	Type       TSType
	IPProtocol uint8 // 0 = any
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
}

// TS is the TSi or TSr payload (Initiator selects which).
type TS struct {
	Initiator bool
	Selectors []TrafficSelector
}

// SK is the Encrypted and Authenticated payload, still encrypted: Body is the IV,
// ciphertext (with padding) and ICV. InnerNext is the type of the first payload inside;
// it travels in SK's own Next Payload field, so SK is always the last payload.
type SK struct {
	InnerNext PayloadType
	Body      []byte
}

// SKF is the Encrypted Fragment payload (RFC 7383).
type SKF struct {
	InnerNext PayloadType // non-zero only in fragment number 1
	Number    uint16
	Total     uint16
	Body      []byte
}

// ConfigAttr is one configuration attribute of a CP payload.
type ConfigAttr struct {
	Type  uint16
	Value []byte
}

// CP is the Configuration payload.
type CP struct {
	CfgType CfgType
	Attrs   []ConfigAttr
}

// EAP is the Extensible Authentication payload; Data is the EAP message.
type EAP struct{ Data []byte }

// Unknown is a payload of a type this package does not know, kept when not critical
// so that a message can be re-encoded.
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

// Message is an IKE message. As ParseMessage returns it, Payloads is the unencrypted
// chain, which for a protected message ends with (or is only) the still encrypted *SK or
// *SKF; once the SK content is decrypted and parsed with ParsePayloads, a caller may
// keep the inner payloads here instead.
type Message struct {
	Header   Header
	Payloads []Payload
}
