#!/bin/sh
# Regenerates the strongSwan-made TEST credentials in this folder (see README.md).
# Needs strongSwan's pki (5.9.x). The output differs on every run (fresh keys), so the
# tests read everything they compare from the files themselves, except the dates.
set -e
cd "$(dirname "$0")"
pki() { command pki "$@" 2>/dev/null; }
D='--dateform %Y-%m-%d'
CA_T="$D --not-before 2025-01-01 --not-after 2045-01-01"
EE_T="$D --not-before 2025-06-01 --not-after 2035-06-01"
O='C=CH, O=mobikevpn test'

# RSA-3072: CA, and one gateway key with leaves signed four ways by the CA.
pki --gen --type rsa --size 3072 --outform pem >rsa-ca.key
pki --self --ca --in rsa-ca.key $CA_T --dn "$O, CN=mobikevpn test RSA CA" --outform pem >rsa-ca.pem
pki --gen --type rsa --size 3072 --outform pem >rsa-gw.key
pki --pub --in rsa-gw.key >rsa-gw.pub
SAN='--san gw.example.org --san alice@example.org --san 198.51.100.1 --san 2001:db8::1'
pki --issue --in rsa-gw.pub --cacert rsa-ca.pem --cakey rsa-ca.key $EE_T \
  --dn "$O, CN=gw.example.org" $SAN --flag serverAuth --outform pem >rsa-gw.pem
pki --issue --in rsa-gw.pub --cacert rsa-ca.pem --cakey rsa-ca.key $EE_T \
  --dn "$O, CN=gw.example.org, OU=pss" --rsa-padding pss --digest sha256 --outform pem >rsa-gw-pss256.pem
pki --issue --in rsa-gw.pub --cacert rsa-ca.pem --cakey rsa-ca.key $EE_T \
  --dn "$O, CN=gw.example.org, OU=pss384" --rsa-padding pss --digest sha384 --outform pem >rsa-gw-pss384.pem
pki --issue --in rsa-gw.pub --cacert rsa-ca.pem --cakey rsa-ca.key $EE_T \
  --dn "$O, CN=gw.example.org, OU=sha512" --digest sha512 --outform pem >rsa-gw-sha512.pem
rm rsa-gw.pub

# ECDSA: P-384 root, P-256 intermediate CA, P-256 leaf (key in DER, SEC1).
pki --gen --type ecdsa --size 384 --outform pem >ecdsa-ca.key
pki --self --ca --in ecdsa-ca.key $CA_T --dn "$O, CN=mobikevpn test ECDSA CA" --outform pem >ecdsa-ca.pem
pki --gen --type ecdsa --size 256 --outform pem >ecdsa-int.key
pki --pub --in ecdsa-int.key | pki --issue --cacert ecdsa-ca.pem --cakey ecdsa-ca.key $CA_T --ca \
  --dn "$O, CN=mobikevpn test ECDSA intermediate CA" --outform pem >ecdsa-int.pem
pki --gen --type ecdsa --size 256 >ecdsa-gw.der
pki --pub --in ecdsa-gw.der | pki --issue --cacert ecdsa-int.pem --cakey ecdsa-int.key $EE_T \
  --dn "$O, CN=moon.example.org" --san moon.example.org --san carol@example.org \
  --san 192.0.2.7 --outform der >ecdsa-gw.der.crt

# Ed25519: CA and leaf (key PKCS#8 PEM).
pki --gen --type ed25519 --outform pem >ed25519-ca.key
pki --self --ca --in ed25519-ca.key $CA_T --dn "$O, CN=mobikevpn test Ed25519 CA" --outform pem >ed25519-ca.pem
pki --gen --type ed25519 --outform pem >ed25519-gw.key
pki --pub --in ed25519-gw.key | pki --issue --cacert ed25519-ca.pem --cakey ed25519-ca.key $EE_T \
  --dn "$O, CN=sun.example.org" --san sun.example.org --san dave@example.org \
  --san 2001:db8::7 --outform pem >ed25519-gw.pem

# Known-answer signatures by OpenSSL 3.0 over signed.bin (fixed stand-in signed octets:
# octets 0..255 and a line of text). PKCS#1 v1.5 and Ed25519 are deterministic, so Sign
# must reproduce them; the ECDSA and PSS ones are randomised and only verified.
python3 -c "
import sys
sys.stdout.buffer.write(bytes(range(256)) + b'mobikevpn cert test: stands for RealMessage | Nonce | prf(SK_p, ID\')\n')" >signed.bin
openssl dgst -sha1 -sign rsa-gw.key -out rsa-gw.sha1.sig signed.bin
openssl dgst -sha256 -sign rsa-gw.key -out rsa-gw.sha256.sig signed.bin
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sign rsa-gw.key \
  -out rsa-gw.pss256.sig signed.bin
openssl dgst -sha256 -sign ecdsa-gw.der -keyform DER -out ecdsa-gw.sha256.sig signed.bin
openssl pkeyutl -sign -rawin -inkey ed25519-gw.key -in signed.bin -out ed25519-gw.sig
