"""SNMPv3 messages (RFC 3412 section 6, RFC 3414 section 2.4) on the v1/v2c BER codec.

    SEQUENCE { msgVersion 3,
               SEQUENCE { msgID, msgMaxSize, msgFlags (1 octet), msgSecurityModel 3 },
               OCTET STRING { SEQUENCE { engineID, boots, time, userName, authParams, privParams } },
               scopedPDU SEQUENCE { contextEngineID, contextName, PDU }  or  OCTET STRING (encrypted) }

``encode`` returns the message with its HMAC in place; ``parse`` checks every
length and range and records where the HMAC sits, so the client can verify it
over the same bytes with zeros there. Anything inconsistent raises
``Malformed`` (hostile input never raises anything else, see the fuzz tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.snmp import usm
from probes.snmp.codec import Malformed, Response, _header, _int, _integer, _tlv, decode_pdu

VERSION_3 = 3
USM_MODEL = 3
FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 0x01, 0x02, 0x04
# What we accept in replies: Net-SNMP's own ceiling (65507, the largest UDP payload) is also ours.
MSG_MAX_SIZE = 65507
MAX_ENGINE_ID = 32  # RFC 3411 SnmpEngineID: 5..32 octets (0 only in discovery)
MAX_USER = 32
MAX_MAC = 48  # HMAC-384-SHA-512's truncation, the longest
MAX_INT31 = 2**31 - 1
_SEQ, _OCTETS = 0x30, 0x04
_ZEROS = bytes(MAX_MAC)


@dataclass(slots=True)
class V3Message:
    """A received message's header and security parameters; ``data`` is the whole datagram."""

    data: bytes
    msg_id: int
    flags: int
    engine_id: bytes
    boots: int
    engine_time: int
    user: bytes
    mac_start: int  # where msgAuthenticationParameters' octets sit in ``data``
    mac_end: int
    priv_params: bytes
    payload_start: int  # msgData: the scopedPDU (plain) or the encrypted octets
    payload_end: int

    @property
    def mac(self) -> bytes:
        return self.data[self.mac_start:self.mac_end]

    def unsigned(self) -> bytes:
        """The message as it was signed: the authentication parameters replaced by zeros."""
        n = self.mac_end - self.mac_start
        return self.data[:self.mac_start] + _ZEROS[:n] + self.data[self.mac_end:]


def is_v3(data: bytes) -> bool:
    """Cheap test that a datagram claims to be SNMPv3 (a SEQUENCE starting with INTEGER 3)."""
    if len(data) < 5 or data[0] != _SEQ:
        return False
    n = data[1]
    pos = 2 + (n & 0x7F if n & 0x80 else 0)
    return data[pos:pos + 3] == b"\x02\x01\x03"


def encode(msg_id: int, flags: int, engine_id: bytes, boots: int, engine_time: int, user: bytes,
           msg_data: bytes, keys: usm.LocalKeys | None = None, priv_params: bytes = b"") -> bytes:
    """A whole message; with ``keys`` (and FLAG_AUTH) signed with the user's localised auth key."""
    mac_len = keys.auth.mac_len if keys is not None and flags & FLAG_AUTH else 0
    header = _int(VERSION_3) + _tlv(_SEQ, _int(msg_id) + _int(MSG_MAX_SIZE) + _tlv(_OCTETS, bytes((flags,)))
                                    + _int(USM_MODEL))
    usm_head = _tlv(_OCTETS, engine_id) + _int(boots) + _int(engine_time) + _tlv(_OCTETS, user)
    usm_inner = usm_head + _tlv(_OCTETS, _ZEROS[:mac_len]) + _tlv(_OCTETS, priv_params)
    usm_seq = _tlv(_SEQ, usm_inner)
    sec = _tlv(_OCTETS, usm_seq)
    body = header + sec + msg_data
    message = _tlv(_SEQ, body)
    if not mac_len:
        return message
    assert keys is not None
    # Offset of the zeros: outer header, msgVersion + msgGlobalData, the two wrappers of the
    # security parameters, the fields before authParams, and authParams' own 2-octet header.
    at = (len(message) - len(body)) + len(header) + (len(sec) - len(usm_seq)) + \
        (len(usm_seq) - len(usm_inner)) + len(usm_head) + 2
    return message[:at] + usm.sign(keys, message) + message[at + mac_len:]


def octets(ciphertext: bytes) -> bytes:
    """msgData of an encrypted message: the encryptedPDU OCTET STRING."""
    return _tlv(_OCTETS, ciphertext)


def scoped_pdu(context_engine_id: bytes, pdu: bytes, context_name: bytes = b"") -> bytes:
    return _tlv(_SEQ, _tlv(_OCTETS, context_engine_id) + _tlv(_OCTETS, context_name) + pdu)


def parse(data: bytes) -> V3Message:
    """Header and security parameters of an SNMPv3 message; anything unexpected raises Malformed."""
    try:
        return _parse(data)
    except Malformed:
        raise
    except (IndexError, ValueError, TypeError, OverflowError) as exc:  # belt and braces
        raise Malformed(str(exc)) from None


def _octets(data: bytes, pos: int, end: int, what: str, limit: int) -> tuple[bytes, int]:
    tag, start, stop = _header(data, pos, end)
    if tag != _OCTETS or stop - start > limit:
        raise Malformed(f"bad {what}")
    return data[start:stop], stop


def _bounded(data: bytes, pos: int, end: int, what: str, lo: int = 0, hi: int = MAX_INT31) -> tuple[int, int]:
    value, pos = _integer(data, pos, end)
    if not lo <= value <= hi:
        raise Malformed(f"{what} out of range")
    return value, pos


def _parse(data: bytes) -> V3Message:
    tag, pos, end = _header(data, 0, len(data))
    if tag != _SEQ:
        raise Malformed("not a SEQUENCE")
    version, pos = _integer(data, pos, end)
    if version != VERSION_3:
        raise Malformed(f"not SNMPv3 (version {version})")
    tag, gpos, pos = _header(data, pos, end)
    if tag != _SEQ:
        raise Malformed("expected msgGlobalData")
    msg_id, gpos = _bounded(data, gpos, pos, "msgID")
    _max_size, gpos = _bounded(data, gpos, pos, "msgMaxSize", 484)
    flags_octets, gpos = _octets(data, gpos, pos, "msgFlags", 1)
    if len(flags_octets) != 1:
        raise Malformed("msgFlags is not one octet")
    flags = flags_octets[0]
    if flags & FLAG_PRIV and not flags & FLAG_AUTH or flags & ~0x07:
        raise Malformed(f"invalid msgFlags 0x{flags:02x}")
    model, gpos = _integer(data, gpos, pos)
    if model != USM_MODEL or gpos != pos:
        raise Malformed("not the user-based security model")
    tag, spos, pos = _header(data, pos, end)
    if tag != _OCTETS:
        raise Malformed("expected msgSecurityParameters")
    tag, spos, send = _header(data, spos, pos)
    if tag != _SEQ or send != pos:
        raise Malformed("bad UsmSecurityParameters")
    engine_id, spos = _octets(data, spos, send, "msgAuthoritativeEngineID", MAX_ENGINE_ID)
    boots, spos = _bounded(data, spos, send, "msgAuthoritativeEngineBoots")
    engine_time, spos = _bounded(data, spos, send, "msgAuthoritativeEngineTime")
    user, spos = _octets(data, spos, send, "msgUserName", MAX_USER)
    tag, mac_start, spos = _header(data, spos, send)
    if tag != _OCTETS or spos - mac_start > MAX_MAC:
        raise Malformed("bad msgAuthenticationParameters")
    mac_end = spos
    priv_params, spos = _octets(data, spos, send, "msgPrivacyParameters", 32)
    if spos != send:
        raise Malformed("trailing bytes in UsmSecurityParameters")
    tag, start, stop = _header(data, pos, end)
    if stop != end:
        raise Malformed("trailing bytes after msgData")
    if flags & FLAG_PRIV:
        if tag != _OCTETS:
            raise Malformed("expected encryptedPDU")
    elif tag == _SEQ:
        start = pos  # a plain scopedPDU is parsed with its own header
    else:
        raise Malformed("expected scopedPDU")
    return V3Message(data, msg_id, flags, engine_id, boots, engine_time, user, mac_start, mac_end, priv_params,
                     start, stop)


def parse_scoped(plain: bytes, pos: int = 0, end: int | None = None) -> Response:
    """The PDU inside a scopedPDU; bytes after the SEQUENCE (DES padding) are ignored."""
    try:
        tag, pos, stop = _header(plain, pos, len(plain) if end is None else end)
        if tag != _SEQ:
            raise Malformed("expected scopedPDU")
        _engine, pos = _octets(plain, pos, stop, "contextEngineID", MAX_ENGINE_ID)
        _name, pos = _octets(plain, pos, stop, "contextName", 255)
        response = decode_pdu(plain, pos, stop, VERSION_3, b"")
        return response
    except Malformed:
        raise
    except (IndexError, ValueError, TypeError, OverflowError) as exc:
        raise Malformed(str(exc)) from None
