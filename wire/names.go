package wire

import "strconv"

func unknownName(kind string, v int) string { return kind + "(" + strconv.Itoa(v) + ")" }

// String returns the IANA name of the exchange type, or EXCHANGE(n).
func (t ExchangeType) String() string {
	switch t {
	case IKE_SA_INIT:
		return "IKE_SA_INIT"
	case IKE_AUTH:
		return "IKE_AUTH"
	case CREATE_CHILD_SA:
		return "CREATE_CHILD_SA"
	case INFORMATIONAL:
		return "INFORMATIONAL"
	case IKE_SESSION_RESUME:
		return "IKE_SESSION_RESUME"
	case IKE_INTERMEDIATE:
		return "IKE_INTERMEDIATE"
	case IKE_FOLLOWUP_KE:
		return "IKE_FOLLOWUP_KE"
	}
	return unknownName("EXCHANGE", int(t))
}

// String returns the RFC 7296 notation of the payload type (SA, KE, IDi, N, ...), or
// PAYLOAD(n).
func (t PayloadType) String() string {
	switch t {
	case PayloadNone:
		return "NONE"
	case PayloadSA:
		return "SA"
	case PayloadKE:
		return "KE"
	case PayloadIDi:
		return "IDi"
	case PayloadIDr:
		return "IDr"
	case PayloadCERT:
		return "CERT"
	case PayloadCERTREQ:
		return "CERTREQ"
	case PayloadAUTH:
		return "AUTH"
	case PayloadNonce:
		return "Nonce"
	case PayloadNotify:
		return "N"
	case PayloadDelete:
		return "D"
	case PayloadVendor:
		return "V"
	case PayloadTSi:
		return "TSi"
	case PayloadTSr:
		return "TSr"
	case PayloadSK:
		return "SK"
	case PayloadCP:
		return "CP"
	case PayloadEAP:
		return "EAP"
	case PayloadSKF:
		return "SKF"
	}
	return unknownName("PAYLOAD", int(t))
}

// String returns the protocol name (IKE, AH, ESP), or PROTO(n).
func (p ProtocolID) String() string {
	switch p {
	case ProtoNone:
		return "NONE"
	case ProtoIKE:
		return "IKE"
	case ProtoAH:
		return "AH"
	case ProtoESP:
		return "ESP"
	}
	return unknownName("PROTO", int(p))
}

// String returns the transform type's short name (ENCR, PRF, INTEG, DH, ESN, ADDKE1-7),
// or TRANSFORM(n).
func (t TransformType) String() string {
	switch {
	case t == TransformENCR:
		return "ENCR"
	case t == TransformPRF:
		return "PRF"
	case t == TransformINTEG:
		return "INTEG"
	case t == TransformDH:
		return "DH"
	case t == TransformESN:
		return "ESN"
	case t >= TransformADDKE1 && t <= TransformADDKE7:
		return "ADDKE" + strconv.Itoa(int(t-TransformADDKE1)+1)
	}
	return unknownName("TRANSFORM", int(t))
}

// String returns the ID type's RFC 7296 name, or ID(n).
func (t IDType) String() string {
	switch t {
	case ID_IPV4_ADDR:
		return "ID_IPV4_ADDR"
	case ID_FQDN:
		return "ID_FQDN"
	case ID_RFC822_ADDR:
		return "ID_RFC822_ADDR"
	case ID_IPV6_ADDR:
		return "ID_IPV6_ADDR"
	case ID_DER_ASN1_DN:
		return "ID_DER_ASN1_DN"
	case ID_DER_ASN1_GN:
		return "ID_DER_ASN1_GN"
	case ID_KEY_ID:
		return "ID_KEY_ID"
	}
	return unknownName("ID", int(t))
}

// String returns a short name of the authentication method, or AUTH(n).
func (m AuthMethod) String() string {
	switch m {
	case AuthRSASig:
		return "RSA_SIG"
	case AuthSharedKey:
		return "SHARED_KEY_MIC"
	case AuthDSSSig:
		return "DSS_SIG"
	case AuthECDSA256:
		return "ECDSA_SHA256_P256"
	case AuthECDSA384:
		return "ECDSA_SHA384_P384"
	case AuthECDSA521:
		return "ECDSA_SHA512_P521"
	case AuthNULL:
		return "NULL_AUTH"
	case AuthDigitalSignature:
		return "DIGITAL_SIGNATURE"
	}
	return unknownName("AUTH", int(m))
}

// String returns the configuration type's RFC 7296 name, or CFG(n).
func (t CfgType) String() string {
	switch t {
	case CFG_REQUEST:
		return "CFG_REQUEST"
	case CFG_REPLY:
		return "CFG_REPLY"
	case CFG_SET:
		return "CFG_SET"
	case CFG_ACK:
		return "CFG_ACK"
	}
	return unknownName("CFG", int(t))
}

// notifyNames lists the IANA names of notify message types, in ascending order.
var notifyNames = [...]struct {
	t    NotifyType
	name string
}{
	{UNSUPPORTED_CRITICAL_PAYLOAD, "UNSUPPORTED_CRITICAL_PAYLOAD"},
	{INVALID_IKE_SPI, "INVALID_IKE_SPI"},
	{INVALID_MAJOR_VERSION, "INVALID_MAJOR_VERSION"},
	{INVALID_SYNTAX, "INVALID_SYNTAX"},
	{INVALID_MESSAGE_ID, "INVALID_MESSAGE_ID"},
	{INVALID_SPI, "INVALID_SPI"},
	{NO_PROPOSAL_CHOSEN, "NO_PROPOSAL_CHOSEN"},
	{INVALID_KE_PAYLOAD, "INVALID_KE_PAYLOAD"},
	{AUTHENTICATION_FAILED, "AUTHENTICATION_FAILED"},
	{SINGLE_PAIR_REQUIRED, "SINGLE_PAIR_REQUIRED"},
	{NO_ADDITIONAL_SAS, "NO_ADDITIONAL_SAS"},
	{INTERNAL_ADDRESS_FAILURE, "INTERNAL_ADDRESS_FAILURE"},
	{FAILED_CP_REQUIRED, "FAILED_CP_REQUIRED"},
	{TS_UNACCEPTABLE, "TS_UNACCEPTABLE"},
	{INVALID_SELECTORS, "INVALID_SELECTORS"},
	{UNACCEPTABLE_ADDRESSES, "UNACCEPTABLE_ADDRESSES"},
	{UNEXPECTED_NAT_DETECTED, "UNEXPECTED_NAT_DETECTED"},
	{42, "USE_ASSIGNED_HoA"},
	{TEMPORARY_FAILURE, "TEMPORARY_FAILURE"},
	{CHILD_SA_NOT_FOUND, "CHILD_SA_NOT_FOUND"},
	{STATE_NOT_FOUND, "STATE_NOT_FOUND"},
	{INITIAL_CONTACT, "INITIAL_CONTACT"},
	{SET_WINDOW_SIZE, "SET_WINDOW_SIZE"},
	{ADDITIONAL_TS_POSSIBLE, "ADDITIONAL_TS_POSSIBLE"},
	{IPCOMP_SUPPORTED, "IPCOMP_SUPPORTED"},
	{NAT_DETECTION_SOURCE_IP, "NAT_DETECTION_SOURCE_IP"},
	{NAT_DETECTION_DESTINATION_IP, "NAT_DETECTION_DESTINATION_IP"},
	{COOKIE, "COOKIE"},
	{USE_TRANSPORT_MODE, "USE_TRANSPORT_MODE"},
	{HTTP_CERT_LOOKUP_SUPPORTED, "HTTP_CERT_LOOKUP_SUPPORTED"},
	{REKEY_SA, "REKEY_SA"},
	{ESP_TFC_PADDING_NOT_SUPPORTED, "ESP_TFC_PADDING_NOT_SUPPORTED"},
	{NON_FIRST_FRAGMENTS_ALSO, "NON_FIRST_FRAGMENTS_ALSO"},
	{MOBIKE_SUPPORTED, "MOBIKE_SUPPORTED"},
	{ADDITIONAL_IP4_ADDRESS, "ADDITIONAL_IP4_ADDRESS"},
	{ADDITIONAL_IP6_ADDRESS, "ADDITIONAL_IP6_ADDRESS"},
	{NO_ADDITIONAL_ADDRESSES, "NO_ADDITIONAL_ADDRESSES"},
	{UPDATE_SA_ADDRESSES, "UPDATE_SA_ADDRESSES"},
	{COOKIE2, "COOKIE2"},
	{NO_NATS_ALLOWED, "NO_NATS_ALLOWED"},
	{AUTH_LIFETIME, "AUTH_LIFETIME"},
	{MULTIPLE_AUTH_SUPPORTED, "MULTIPLE_AUTH_SUPPORTED"},
	{ANOTHER_AUTH_FOLLOWS, "ANOTHER_AUTH_FOLLOWS"},
	{REDIRECT_SUPPORTED, "REDIRECT_SUPPORTED"},
	{REDIRECT, "REDIRECT"},
	{REDIRECTED_FROM, "REDIRECTED_FROM"},
	{16409, "TICKET_LT_OPAQUE"},
	{16410, "TICKET_REQUEST"},
	{16411, "TICKET_ACK"},
	{16412, "TICKET_NACK"},
	{16413, "TICKET_OPAQUE"},
	{16414, "LINK_ID"},
	{16415, "USE_WESP_MODE"},
	{16416, "ROHC_SUPPORTED"},
	{EAP_ONLY_AUTHENTICATION, "EAP_ONLY_AUTHENTICATION"},
	{CHILDLESS_IKEV2_SUPPORTED, "CHILDLESS_IKEV2_SUPPORTED"},
	{16419, "QUICK_CRASH_DETECTION"},
	{IKEV2_MESSAGE_ID_SYNC_SUPPORTED, "IKEV2_MESSAGE_ID_SYNC_SUPPORTED"},
	{IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED, "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED"},
	{IKEV2_MESSAGE_ID_SYNC, "IKEV2_MESSAGE_ID_SYNC"},
	{IPSEC_REPLAY_COUNTER_SYNC, "IPSEC_REPLAY_COUNTER_SYNC"},
	{16424, "SECURE_PASSWORD_METHODS"},
	{16425, "PSK_PERSIST"},
	{16426, "PSK_CONFIRM"},
	{16427, "ERX_SUPPORTED"},
	{16428, "IFOM_CAPABILITY"},
	{16429, "SENDER_REQUEST_ID"},
	{IKEV2_FRAGMENTATION_SUPPORTED, "IKEV2_FRAGMENTATION_SUPPORTED"},
	{SIGNATURE_HASH_ALGORITHMS, "SIGNATURE_HASH_ALGORITHMS"},
	{16432, "CLONE_IKE_SA_SUPPORTED"},
	{16433, "CLONE_IKE_SA"},
	{16434, "PUZZLE"},
	{USE_PPK, "USE_PPK"},
	{16436, "PPK_IDENTITY"},
	{16437, "NO_PPK_AUTH"},
	{INTERMEDIATE_EXCHANGE_SUPPORTED, "INTERMEDIATE_EXCHANGE_SUPPORTED"},
	{16439, "IP4_ALLOWED"},
	{16440, "IP6_ALLOWED"},
	{ADDITIONAL_KEY_EXCHANGE, "ADDITIONAL_KEY_EXCHANGE"},
	{16442, "USE_AGGFRAG"},
	{SWITCH_TO_IP_ADDRESS, "SWITCH_TO_IP_ADDRESS"},
}

// String returns the IANA name of the notify type (e.g. "AUTHENTICATION_FAILED"), or
// NOTIFY(n) for a type without a name here.
func (t NotifyType) String() string {
	for _, e := range notifyNames {
		if e.t == t {
			return e.name
		}
	}
	return unknownName("NOTIFY", int(t))
}

// ParseNotifyType returns the notify type named name (as String returns it, including
// the NOTIFY(n) form).
func ParseNotifyType(name string) (NotifyType, bool) {
	for _, e := range notifyNames {
		if e.name == name {
			return e.t, true
		}
	}
	if len(name) > len("NOTIFY()") && name[:7] == "NOTIFY(" && name[len(name)-1] == ')' {
		n, err := strconv.ParseUint(name[7:len(name)-1], 10, 16)
		if err == nil {
			return NotifyType(n), true
		}
	}
	return 0, false
}
