"""USM crypto and SNMPv3 message bytes against RFC 3414 A.3 and pysnmp (the reference implementation here)."""

from __future__ import annotations

import hashlib

import pytest
from pyasn1.codec.ber import decoder
from pyasn1.type import univ

from probes.snmp import usm, v3msg
from probes.snmp.codec import GET, encode_pdu, oid_content, varbind_null

ENGINE = bytes.fromhex("000000000000000000000002")  # RFC 3414 A.3's engine id
NETSNMP_ENGINE = bytes.fromhex("80001f88807c0c4e2b1f6bd26500000000")


# --- RFC 3414 A.3: password to key and localisation ------------------------------------------

@pytest.mark.parametrize("hash_name,ku,kul", [
    pytest.param("md5", "9faf3283884e92834ebc9847d8edd963", "526f5eed9fcce26f8964c2930787d82b", id="A.3.1-MD5"),
    pytest.param("sha1", "9fb5cc0381497b3793528939ff788d5d79145211",
                 "6695febc9288e36282235fc7151f128497b38f3f", id="A.3.2-SHA"),
])
def test_rfc3414_a3_vectors(hash_name, ku, kul):
    got = usm.hash_passphrase(b"maplesyrup", hash_name)
    assert got.hex() == ku
    assert usm.localize(got, ENGINE, hash_name).hex() == kul


@pytest.mark.parametrize("proto", sorted(usm.AUTH), ids=str)
@pytest.mark.parametrize("phrase", [b"maplesyrup", b"auth-pass-123", b"x" * 8, "中文密码长一点".encode(),
                                    b"a" * 200],
                         ids=["maplesyrup", "typical", "minimum", "utf8", "longer-than-64"])
def test_auth_key_matches_pysnmp(proto, phrase):
    from pysnmp.proto.secmod.rfc3414 import localkey

    p = usm.AUTH[proto]
    fn = getattr(hashlib, p.hash)
    ku = usm.hash_passphrase(phrase, p.hash)
    assert ku == localkey.hash_passphrase(phrase, fn).asOctets()
    assert usm.localize(ku, NETSNMP_ENGINE, p.hash) == \
        localkey.localize_key(ku, univ.OctetString(NETSNMP_ENGINE), fn).asOctets()


def _pysnmp_priv(name: str):
    from pysnmp.proto.secmod.eso.priv import aes192, aes256, des3
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pysnmp.proto.secmod.rfc3826.priv import aes

    return {"DES": des.Des, "3DES": des3.Des3, "AES": aes.Aes, "AES128": aes.Aes,
            "AES192": aes192.AesBlumenthal192, "AES256": aes256.AesBlumenthal256,
            "AES192C": aes192.Aes192, "AES256C": aes256.Aes256}[name]()


def _pysnmp_auth_id(proto: str):
    from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
    from pysnmp.proto.secmod.rfc7860.auth import hmacsha2

    return {"MD5": hmacmd5.HmacMd5.SERVICE_ID, "SHA": hmacsha.HmacSha.SERVICE_ID,
            "SHA224": hmacsha2.HmacSha2.SHA224_SERVICE_ID, "SHA256": hmacsha2.HmacSha2.SHA256_SERVICE_ID,
            "SHA384": hmacsha2.HmacSha2.SAH384_SERVICE_ID, "SHA512": hmacsha2.HmacSha2.SHA512_SERVICE_ID}[proto]


def _pysnmp_auth(proto: str):
    from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
    from pysnmp.proto.secmod.rfc7860.auth import hmacsha2

    if proto == "MD5":
        return hmacmd5.HmacMd5()
    if proto == "SHA":
        return hmacsha.HmacSha()
    return hmacsha2.HmacSha2(_pysnmp_auth_id(proto))


PRIV_CASES = [(a, p) for p in sorted(usm.PRIV) for a in ("MD5", "SHA", "SHA256", "SHA512")
              # pysnmp's DES and 3DES localise with MD5 and SHA-1 only
              if not (usm.PRIV[p].cipher != "aes" and a not in ("MD5", "SHA"))]


@pytest.mark.parametrize("auth,priv", PRIV_CASES, ids=[f"{a}-{p}" for a, p in PRIV_CASES])
def test_priv_key_localisation_and_extension_match_pysnmp(auth, priv):
    ref = _pysnmp_priv(priv)
    a = usm.AUTH[auth]
    ku = usm.hash_passphrase(b"priv-pass-456", a.hash)
    expected = ref.localize_key(_pysnmp_auth_id(auth), ref.hash_passphrase(_pysnmp_auth_id(auth), b"priv-pass-456"),
                                univ.OctetString(NETSNMP_ENGINE))
    expected = bytes(expected.asOctets() if hasattr(expected, "asOctets") else expected)
    got = usm.localized_priv_key(ku, NETSNMP_ENGINE, a, usm.PRIV[priv])
    assert got == expected[:usm.PRIV[priv].key_len]
    assert len(got) == usm.PRIV[priv].key_len


# --- HMAC: placement and truncation -----------------------------------------------------------

def _keys(auth: str, priv: str | None = None) -> usm.LocalKeys:
    a = usm.AUTH[auth]
    akey = usm.localize(usm.hash_passphrase(b"auth-pass-123", a.hash), NETSNMP_ENGINE, a.hash)
    if priv is None:
        return usm.LocalKeys(a, akey)
    p = usm.PRIV[priv]
    pkey = usm.localized_priv_key(usm.hash_passphrase(b"priv-pass-456", a.hash), NETSNMP_ENGINE, a, p)
    return usm.LocalKeys(a, akey, p, pkey)


def _request(keys: usm.LocalKeys | None, flags: int, msg_id: int = 424242) -> bytes:
    pdu = encode_pdu(GET, msg_id, varbind_null(oid_content((1, 3, 6, 1, 2, 1, 1, 3, 0))))
    return v3msg.encode(msg_id, flags, NETSNMP_ENGINE, 7, 123456, b"lifeuser", v3msg.scoped_pdu(NETSNMP_ENGINE, pdu),
                        keys)


@pytest.mark.parametrize("auth", sorted(usm.AUTH), ids=str)
def test_hmac_truncation_and_placement_match_pysnmp(auth):
    keys = _keys(auth)
    flags = v3msg.FLAG_AUTH | v3msg.FLAG_REPORTABLE
    signed = _request(keys, flags)
    message = v3msg.parse(signed)
    assert len(message.mac) == keys.auth.mac_len == {"MD5": 12, "SHA": 12, "SHA224": 16, "SHA256": 24,
                                                      "SHA384": 32, "SHA512": 48}[auth]
    unsigned = message.unsigned()
    assert unsigned[message.mac_start:message.mac_end] == bytes(keys.auth.mac_len)
    ref = _pysnmp_auth(auth).authenticate_outgoing_message(univ.OctetString(keys.auth_key), unsigned)
    assert bytes(ref) == signed
    assert usm.verify(keys, unsigned, message.mac)
    tampered = bytearray(signed)
    tampered[-1] ^= 1
    bad = v3msg.parse(bytes(tampered))
    assert not usm.verify(keys, bad.unsigned(), bad.mac)


# --- privacy: AES-CFB IV/salt and DES-CBC, byte for byte -----------------------------------------

@pytest.mark.parametrize("priv", ["AES", "AES192", "AES256", "AES256C", "DES", "3DES"], ids=str)
@pytest.mark.parametrize("size", [1, 8, 61, 1400], ids=lambda n: f"{n}B")
def test_encryption_matches_pysnmp(priv, size):
    keys = _keys("SHA", priv)
    plaintext = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    boots, engine_time, salt = 5, 987654, 0x0102030405060708
    ref = _pysnmp_priv(priv)
    ref.local_int = salt if keys.priv.cipher == "aes" else salt & 0xFFFFFFFF
    ref_cipher, ref_params = ref.encrypt_data(univ.OctetString(keys.priv_key), (boots, engine_time, None), plaintext)
    ciphertext, params = usm.encrypt(keys, plaintext, boots, engine_time, salt)
    if keys.priv.cipher == "aes":
        # RFC 3826: privParameters is the 64-bit salt; the IV is boots || time || salt.
        assert params == salt.to_bytes(8, "big")
        assert ciphertext == bytes(ref_cipher)
    else:
        # RFC 3414 8.1.1.1: privParameters is boots || 32-bit counter. pysnmp pads a whole block
        # even when none is needed; the shared blocks must be identical.
        assert params == boots.to_bytes(4, "big") + (salt & 0xFFFFFFFF).to_bytes(4, "big")
        assert bytes(ref_cipher)[:len(ciphertext)] == ciphertext
    assert params == bytes(ref_params)
    plain = usm.decrypt(keys, ciphertext, boots, engine_time, params)
    assert plain[:size] == plaintext
    ref_plain = ref.decrypt_data(univ.OctetString(keys.priv_key), (boots, engine_time, univ.OctetString(params)),
                                 univ.OctetString(ciphertext))
    assert bytes(ref_plain)[:size] == plaintext


def test_aes_iv_uses_the_message_boots_and_time():
    keys = _keys("SHA", "AES")
    a, _ = usm.encrypt(keys, b"x" * 32, 1, 100, 9)
    b, _ = usm.encrypt(keys, b"x" * 32, 1, 101, 9)
    c, _ = usm.encrypt(keys, b"x" * 32, 1, 100, 10)
    assert len({a, b, c}) == 3
    assert usm.decrypt(keys, a, 1, 101, (9).to_bytes(8, "big")) != b"x" * 32


# --- the whole message, read back by pysnmp's ASN.1 definitions -------------------------------

def test_encrypted_message_reads_back_with_pysnmp():
    from pysnmp.proto.mpmod.rfc3412 import ScopedPDU, SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    keys = _keys("SHA256", "AES256")
    pdu = encode_pdu(GET, 77, varbind_null(oid_content((1, 3, 6, 1, 2, 1, 1, 5, 0))))
    scoped = v3msg.scoped_pdu(NETSNMP_ENGINE, pdu)
    ciphertext, params = usm.encrypt(keys, scoped, 3, 4242, 1234)
    flags = v3msg.FLAG_AUTH | v3msg.FLAG_PRIV | v3msg.FLAG_REPORTABLE
    wire = v3msg.encode(77, flags, NETSNMP_ENGINE, 3, 4242, b"lifeuser", v3msg.octets(ciphertext), keys, params)

    msg, rest = decoder.decode(wire, asn1Spec=SNMPv3Message())
    assert rest == b""
    assert int(msg["msgVersion"]) == 3
    glob = msg["msgGlobalData"]
    assert (int(glob["msgID"]), bytes(glob["msgFlags"]), int(glob["msgSecurityModel"])) == (77, bytes((flags,)), 3)
    sec, rest = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    assert rest == b""
    assert bytes(sec["msgAuthoritativeEngineId"]) == NETSNMP_ENGINE
    assert (int(sec["msgAuthoritativeEngineBoots"]), int(sec["msgAuthoritativeEngineTime"])) == (3, 4242)
    assert bytes(sec["msgUserName"]) == b"lifeuser"
    assert bytes(sec["msgPrivacyParameters"]) == params
    mac = bytes(sec["msgAuthenticationParameters"])
    assert len(mac) == 24
    assert bytes(_pysnmp_auth("SHA256").authenticate_outgoing_message(
        univ.OctetString(keys.auth_key), wire.replace(mac, bytes(24)))) == wire
    ref = _pysnmp_priv("AES256")
    plain = ref.decrypt_data(univ.OctetString(keys.priv_key), (3, 4242, univ.OctetString(params)),
                             univ.OctetString(bytes(msg["msgData"]["encryptedPDU"])))
    decoded, _ = decoder.decode(bytes(plain), asn1Spec=ScopedPDU())
    assert bytes(decoded["contextEngineId"]) == NETSNMP_ENGINE
    assert int(decoded["data"]["get-request"]["request-id"]) == 77


def test_local_keys_never_show_their_bytes():
    keys = _keys("SHA", "AES")
    text = repr(keys) + str(keys) + repr([keys]) + f"{keys}"
    assert keys.auth_key.hex() not in text and keys.priv_key.hex() not in text
    assert repr(keys.auth_key)[2:-1] not in text
