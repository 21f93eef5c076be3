"""USM cryptography (RFC 3414, 3826, 7860): keys from pass phrases, HMAC digests, AES-CFB and DES-CBC.

Pure functions over bytes, so tests compare them byte for byte with pysnmp and
the RFC 3414 A.3 vectors. The one expensive step is turning a pass phrase into
a key: RFC 3414 hashes a megabyte of the repeated phrase (about 2 ms with
SHA-1 here), so ``V3Client`` does it once per pass phrase and localises (one
hash of key + engine id + key) once per device engine. Everything per message
is an HMAC one-shot (about 3.5 us for a 1400-byte message) and one cipher
context (about 7 us), against about 33 ms for pysnmp's engine per poll.

Privacy keys longer than the authentication hash (AES-192/256 with MD5 or
SHA-1) are extended as Net-SNMP 5.9 does for its AES-192/AES-256 (the
draft-blumenthal-aes-usm-04 method: append H(key so far)); the "C" variants
(AES192C, AES256C, 3DES) use the draft-reeder-snmpv3-usm-3desede method that
Cisco uses (append the localised key of the key so far).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any



@functools.cache
def _ciphers() -> tuple[Any, Any, Any, Any, Any]:
    """(Cipher, AES, TripleDES, CFB, CBC), imported on the first encryption: `cryptography` adds
    ~7 MB of RSS, which an agent without SNMPv3 privacy (every ICMP-only one) need not carry."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:  # cryptography moved these to its "decrepit" package (TripleDES in 43, CFB later)
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[no-redef]
    try:
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[no-redef,assignment]
    return Cipher, algorithms.AES, TripleDES, CFB, modes.CBC


PASSPHRASE_BYTES = 1_048_576  # RFC 3414 A.2: the phrase repeated to one megabyte, then hashed


@dataclass(frozen=True, slots=True)
class AuthProtocol:
    name: str  # as in the config (Net-SNMP's -a spelling without dashes)
    hash: str  # hashlib name
    mac_len: int  # the truncated HMAC carried in msgAuthenticationParameters


@dataclass(frozen=True, slots=True)
class PrivProtocol:
    name: str
    cipher: str  # "aes", "des" or "3des"
    key_len: int  # localised key bytes the cipher needs (DES: key and pre-IV)
    extension: str  # how a too-short localised key is extended: "blumenthal" or "reeder"


AUTH = {p.name: p for p in (
    AuthProtocol("MD5", "md5", 12), AuthProtocol("SHA", "sha1", 12),
    # RFC 7860: usmHMAC128SHA224AuthProtocol ... usmHMAC384SHA512AuthProtocol
    AuthProtocol("SHA224", "sha224", 16), AuthProtocol("SHA256", "sha256", 24),
    AuthProtocol("SHA384", "sha384", 32), AuthProtocol("SHA512", "sha512", 48))}
PRIV = {p.name: p for p in (
    PrivProtocol("DES", "des", 16, "blumenthal"),  # 8 key + 8 pre-IV: every hash is long enough
    PrivProtocol("3DES", "3des", 32, "reeder"),  # 24 key + 8 pre-IV
    PrivProtocol("AES", "aes", 16, "blumenthal"), PrivProtocol("AES128", "aes", 16, "blumenthal"),
    PrivProtocol("AES192", "aes", 24, "blumenthal"), PrivProtocol("AES256", "aes", 32, "blumenthal"),
    PrivProtocol("AES192C", "aes", 24, "reeder"), PrivProtocol("AES256C", "aes", 32, "reeder"))}


def hash_passphrase(passphrase: bytes, hash_name: str) -> bytes:
    """Ku of RFC 3414 A.2: the hash of the pass phrase repeated to 1 MB (the slow step: cache it)."""
    if not passphrase:
        raise ValueError("empty pass phrase")
    repeated = passphrase * (PASSPHRASE_BYTES // len(passphrase) + 1)
    return hashlib.new(hash_name, memoryview(repeated)[:PASSPHRASE_BYTES]).digest()


def localize(ku: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """Kul = H(Ku || engineID || Ku), RFC 3414 A.2."""
    return hashlib.new(hash_name, ku + engine_id + ku).digest()


def localized_priv_key(ku: bytes, engine_id: bytes, auth: AuthProtocol, priv: PrivProtocol) -> bytes:
    """The privacy key for ``priv``, localised with the auth protocol's hash and extended if short."""
    key = localize(ku, engine_id, auth.hash)
    while len(key) < priv.key_len:
        if priv.extension == "reeder":
            key += localize(hash_passphrase(key, auth.hash), engine_id, auth.hash)
        else:
            key += hashlib.new(auth.hash, key).digest()
    return key[:priv.key_len]


@dataclass(frozen=True, slots=True)
class LocalKeys:
    """A user's keys localised to one engine. Secret material: never in repr, str or logs."""

    auth: AuthProtocol
    auth_key: bytes = field(repr=False)
    priv: PrivProtocol | None = None
    priv_key: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        return f"LocalKeys({self.auth.name}/{self.priv.name if self.priv else '-'}, <redacted>)"

    __str__ = __repr__


def sign(keys: LocalKeys, message: bytes) -> bytes:
    """The truncated HMAC of ``message`` (whose auth parameters are zeros), RFC 3414 6.3.1 / RFC 7860."""
    return hmac.digest(keys.auth_key, message, keys.auth.hash)[:keys.auth.mac_len]


def verify(keys: LocalKeys, message: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(sign(keys, message), mac)


def encrypt(keys: LocalKeys, plaintext: bytes, boots: int, engine_time: int, salt: int) -> tuple[bytes, bytes]:
    """(ciphertext, msgPrivacyParameters) for a scopedPDU; ``salt`` is the caller's counter."""
    priv = keys.priv
    assert priv is not None
    if priv.cipher == "aes":
        # RFC 3826 3.1.2.1: IV = boots (4) || time (4) || the 64-bit salt sent as privParameters.
        params = (salt & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + params
        Cipher, AES, _, CFB, _ = _ciphers()
        enc = Cipher(AES(keys.priv_key), CFB(iv)).encryptor()
        return enc.update(plaintext) + enc.finalize(), params
    # DES (RFC 3414 8.1.1.1) and 3DES-EDE (Reeder 5.1.1.1): salt = boots || 32-bit counter,
    # IV = pre-IV xor salt; the plaintext is padded to the block (the BER length ends it).
    params = boots.to_bytes(4, "big") + (salt & 0xFFFFFFFF).to_bytes(4, "big")
    cipher_key, iv = _des_key_iv(keys, params)
    padded = plaintext + bytes(-len(plaintext) % 8)
    Cipher, _, TripleDES, _, CBC = _ciphers()
    enc = Cipher(TripleDES(cipher_key), CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize(), params


def decrypt(keys: LocalKeys, ciphertext: bytes, boots: int, engine_time: int, params: bytes) -> bytes:
    """The scopedPDU bytes (DES: with its padding); raises ValueError when it cannot be decrypted."""
    priv = keys.priv
    assert priv is not None
    if len(params) != 8:
        raise ValueError("privacy parameters are not 8 bytes")
    if priv.cipher == "aes":
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + params
        Cipher, AES, _, CFB, _ = _ciphers()
        dec = Cipher(AES(keys.priv_key), CFB(iv)).decryptor()
        return dec.update(ciphertext) + dec.finalize()
    if not ciphertext or len(ciphertext) % 8:
        raise ValueError("DES ciphertext is not a whole number of blocks")
    cipher_key, iv = _des_key_iv(keys, params)
    Cipher, _, TripleDES, _, CBC = _ciphers()
    dec = Cipher(TripleDES(cipher_key), CBC(iv)).decryptor()
    return dec.update(ciphertext) + dec.finalize()


def _des_key_iv(keys: LocalKeys, params: bytes) -> tuple[bytes, bytes]:
    key = keys.priv_key
    if keys.priv is not None and keys.priv.cipher == "des":
        # Single DES as 3DES with K1 = K2 = K3: OpenSSL 3 keeps plain DES in its legacy provider only.
        cipher_key, pre_iv = key[:8] * 3, key[8:16]
    else:
        cipher_key, pre_iv = key[:24], key[24:32]
    return cipher_key, bytes(a ^ b for a, b in zip(pre_iv, params))
