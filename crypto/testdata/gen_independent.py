#!/usr/bin/env python3
"""Writes independent_vectors.txt: known answers for the parts of crypto that no
published vector covers (AES-CBC + HMAC-SHA2 SK payloads, MODP groups 14/15, PSK AUTH,
NAT detection hashes). Computed with Python's own pow/hmac/hashlib, pyca/cryptography
(AES-CBC) and mpmath (the RFC 3526 primes from their defining formula), independently
of the Go code under test. Run: python3 gen_independent.py > independent_vectors.txt
"""
import hashlib, hmac, ipaddress, struct
import mpmath
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

def h(b): return b.hex()
def det(label, n):  # deterministic pseudo-random octets
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label.encode() + bytes([i])).digest(); i += 1
    return out[:n]

print("# Independently computed known answers (see gen_independent.py; Python", end=" ")
print("hmac/hashlib/pow, pyca/cryptography AES-CBC, mpmath for the RFC 3526 primes).")
print("# Format: blank-line separated records of \"name = lowercase hex\" (or text).")

# RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * ( floor(2^(n-130) pi) + c ), g = 2
mpmath.mp.prec = 4000
def modp(n, c):
    f = int(mpmath.floor(mpmath.mpf(2) ** (n - 130) * mpmath.pi))
    return 2 ** n - 2 ** (n - 64) - 1 + 2 ** 64 * (f + c)
for group, n, c in ((14, 2048, 124476), (15, 3072, 1690314)):
    p = modp(n, c); size = n // 8
    xa = int.from_bytes(det("modp-a-%d" % group, 64), "big")
    xb = int.from_bytes(det("modp-b-%d" % group, 64), "big")
    ya, yb = pow(2, xa, p), pow(2, xb, p)
    s = pow(yb, xa, p)
    assert s == pow(ya, xb, p)
    print()
    print("# MODP group %d (RFC 3526 %d-bit), g = 2" % (group, n))
    print("kind = modp")
    print("group = %d" % group)
    print("prime = %x" % p)
    print("private_i = %x" % xa)
    print("public_i = " + h(ya.to_bytes(size, "big")))
    print("private_r = %x" % xb)
    print("public_r = " + h(yb.to_bytes(size, "big")))
    print("shared = " + h(s.to_bytes(size, "big")))

# SK payload with AES-CBC + HMAC-SHA2-*: ICV = HMAC(SK_a, header..SK header | IV | ct)
# truncated. Padding: minimal, zero octets, then the Pad Length octet.
suites = [("aes128", 16, "sha256", hashlib.sha256, 32, 16, 12),
          ("aes192", 24, "sha384", hashlib.sha384, 48, 24, 13),
          ("aes256", 32, "sha512", hashlib.sha512, 64, 32, 14)]
for name, klen, iname, hf, ilen, icvlen, integ_id in suites:
    for ptlen in (0, 15, 16, 37):
        ek = det("ek-" + name, klen); ak = det("ak-" + iname, ilen)
        iv = det("iv-%s-%d" % (name, ptlen), 16)
        pt = det("pt-%d" % ptlen, ptlen)
        padded = (ptlen + 1 + 15) // 16 * 16
        plain = pt + bytes(padded - ptlen - 1) + bytes([padded - ptlen - 1])
        enc = Cipher(algorithms.AES(ek), modes.CBC(iv)).encryptor()
        ct = enc.update(plain) + enc.finalize()
        body_len = 16 + len(ct) + icvlen
        total = 28 + 4 + body_len
        hdr = bytes.fromhex("0123456789abcdeffedcba9876543210") + bytes([46, 0x20, 37, 0x08]) \
            + struct.pack(">I", 7) + struct.pack(">I", total)
        skh = bytes([41, 0]) + struct.pack(">H", 4 + body_len)
        aad = hdr + skh
        icv = hmac.new(ak, aad + iv + ct, hf).digest()[:icvlen]
        print()
        print("# SK payload, %s-%s, %d octets of inner payloads" % (name, iname, ptlen))
        print("kind = sk_cbc")
        print("encr_bits = %d" % (klen * 8))
        print("integ = %d" % integ_id)
        print("sk_e = " + h(ek))
        print("sk_a = " + h(ak))
        print("iv = " + h(iv))
        print("plaintext = " + h(pt))
        print("aad = " + h(aad))
        print("message = " + h(aad + iv + ct + icv))

# AUTH with a shared key (RFC 7296 2.15)
for prfname, hf in (("5", hashlib.sha256), ("7", hashlib.sha512)):
    real = det("realmsg", 300); nonce = det("nonce", 32); skp = det("skp", hf().digest_size)
    idb = bytes([2, 0, 0, 0]) + b"gw.example.org"
    psk = b"correct horse battery staple"
    mac = hmac.new(skp, idb, hf).digest()
    signed = real + nonce + mac
    auth = hmac.new(hmac.new(psk, b"Key Pad for IKEv2", hf).digest(), signed, hf).digest()
    print()
    print("# PSK AUTH, PRF transform %s" % prfname)
    print("kind = psk_auth")
    print("prf = " + prfname)
    print("real_message = " + h(real))
    print("peer_nonce = " + h(nonce))
    print("sk_p = " + h(skp))
    print("id_body = " + h(idb))
    print("psk = " + h(psk))
    print("signed_octets = " + h(signed))
    print("auth = " + h(auth))

# NAT detection (RFC 7296 2.23): SHA-1(SPIi | SPIr | IP | port)
for spii, spir, ip, port in ((0x0123456789abcdef, 0, "192.0.2.10", 500),
                             (0x0123456789abcdef, 0xfedcba9876543210, "198.51.100.1", 4500),
                             (0x1111111111111111, 0x2222222222222222, "2001:db8::1", 4500)):
    data = struct.pack(">QQ", spii, spir) + ipaddress.ip_address(ip).packed + struct.pack(">H", port)
    print()
    print("kind = natd")
    print("spi_i = %016x" % spii)
    print("spi_r = %016x" % spir)
    print("addr = %s" % ("[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)))
    print("hash = " + hashlib.sha1(data).hexdigest())
