"""Hostile SNMPv3 input: the message parser and the reply checks only ever raise Malformed, and a
poll against an agent sending broken v3 replies ends ``malformed`` (never an exception or a hang)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.snmp import codec, usm, v3msg
from probes.snmp.codec import GET, RESPONSE, Malformed, oid_content
from probes.snmp.config import Secret, SnmpSettings
from probes.snmp.v3 import REPORT, V3Client, _Engine
from probes.snmp.v3msg import FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE
from tests.snmp.agents import FakeAgent, ticks
from tests.snmp.conftest import FakeTarget, Poller, tier

ENGINE = bytes.fromhex("80001f8804") + b"fake-engine"
AUTH, PRIV = "fuzz-auth-phrase", "fuzz-priv-phrase"
BOOTS, TIME = 3, 5000


def _keys() -> usm.LocalKeys:
    a, p = usm.AUTH["SHA256"], usm.PRIV["AES"]
    return usm.LocalKeys(a, usm.localize(usm.hash_passphrase(AUTH.encode(), a.hash), ENGINE, a.hash), p,
                         usm.localized_priv_key(usm.hash_passphrase(PRIV.encode(), a.hash), ENGINE, a, p))


KEYS = _keys()


def agent_message(msg_id: int, pdu: bytes, flags: int = FLAG_AUTH | FLAG_PRIV, keys: usm.LocalKeys | None = KEYS,
                  engine: bytes = ENGINE, salt: int = 1) -> bytes:
    """What an authoritative engine sends: signed and encrypted as ``flags`` say."""
    scoped = v3msg.scoped_pdu(engine, pdu)
    if flags & FLAG_PRIV:
        assert keys is not None
        ciphertext, params = usm.encrypt(keys, scoped, BOOTS, TIME, salt)
        return v3msg.encode(msg_id, flags, engine, BOOTS, TIME, b"fuzzer", v3msg.octets(ciphertext), keys, params)
    return v3msg.encode(msg_id, flags, engine, BOOTS, TIME, b"fuzzer" if flags else b"", scoped,
                        keys if flags & FLAG_AUTH else None)


def response_pdu(request_id: int, pdu_type: int = RESPONSE) -> bytes:
    vb = codec._tlv(0x30, codec._tlv(0x06, oid_content((1, 3, 6, 1, 2, 1, 1, 3, 0))) + ticks(12345))
    return codec._tlv(pdu_type, codec._int(request_id) + codec._int(0) + codec._int(0) + codec._tlv(0x30, vb))


VALID = agent_message(4242, response_pdu(4242))


def _client_side() -> tuple[V3Client, _Engine]:
    client = V3Client(udp=None)  # type: ignore[arg-type]  # _open never touches the transport
    engine = _Engine()
    engine.learn(ENGINE, BOOTS, TIME, 0.0)
    return client, engine


CLIENT, ENGINE_STATE = _client_side()


def check(data: bytes) -> None:
    """Parse and open ``data`` as the client does; only Malformed may come out."""
    try:
        message = v3msg.parse(data)
    except Malformed:
        return
    try:
        response = CLIENT._open(ENGINE_STATE, KEYS, FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE, message)
    except Malformed:
        return
    assert response.pdu_type in (RESPONSE, REPORT)


def test_valid_reply_opens():
    message = v3msg.parse(VALID)
    response = CLIENT._open(ENGINE_STATE, KEYS, FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE, message)
    assert response.varbinds == [(oid_content((1, 3, 6, 1, 2, 1, 1, 3, 0)), 12345)]


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes(data):
    check(data)
    check(b"\x30\x82" + len(data).to_bytes(2, "big") + b"\x02\x01\x03" + data)


@settings(max_examples=500, deadline=None)
@given(cut=st.integers(0, len(VALID) - 1))
def test_every_truncation_is_malformed(cut):
    with pytest.raises(Malformed):
        message = v3msg.parse(VALID[:cut])
        CLIENT._open(ENGINE_STATE, KEYS, FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE, message)


@settings(max_examples=800, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_byte_edits(edits):
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    check(bytes(data))


HOSTILE_LENGTHS = [b"\x84\xff\xff\xff\xff", b"\x84\x7f\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00", b"\x80", b"\x81",
                   b"\x00", b"\x82\xff\xff"]


@settings(max_examples=500, deadline=None)
@given(pos=st.integers(0, len(VALID) - 2), length=st.sampled_from(HOSTILE_LENGTHS))
def test_hostile_lengths(pos, length):
    # Replace whatever length octet follows a tag position with a hostile long-form length.
    check(VALID[:pos + 1] + length + VALID[pos + 2:])


@pytest.mark.parametrize("flags", [0x02, 0x08, 0x10, 0x83, 0xFF, 0x06], ids=lambda f: f"0x{f:02x}")
def test_bad_msg_flags(flags):
    data = bytearray(VALID)
    at = VALID.index(b"\x04\x01\x03")  # msgFlags: OCTET STRING of one octet, authPriv
    data[at + 2] = flags
    with pytest.raises(Malformed):
        v3msg.parse(bytes(data))


def test_flags_longer_than_one_octet():
    data = VALID.replace(b"\x04\x01\x03", b"\x04\x02\x03\x00", 1)
    with pytest.raises(Malformed):
        v3msg.parse(data)


@pytest.mark.parametrize("size", [33, 1000, 60000])
def test_huge_security_parameters(size):
    huge = agent_message(7, response_pdu(7), engine=b"E" * size)
    with pytest.raises(Malformed):
        v3msg.parse(huge)


def test_truncated_scoped_pdus():
    scoped = v3msg.scoped_pdu(ENGINE, response_pdu(9))
    assert v3msg.parse_scoped(scoped).request_id == 9
    for cut in range(len(scoped)):
        with pytest.raises(Malformed):
            v3msg.parse_scoped(scoped[:cut])


def test_replies_that_must_be_dropped():
    def opened(data: bytes):
        return CLIENT._open(ENGINE_STATE, KEYS, FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE, v3msg.parse(data))

    cases = {
        "plain response to an authPriv request": agent_message(5, response_pdu(5), flags=0, keys=None),
        "authNoPriv response to an authPriv request": agent_message(5, response_pdu(5), flags=FLAG_AUTH),
        "other request id": agent_message(5, response_pdu(6)),
        "other engine": agent_message(5, response_pdu(5), engine=ENGINE + b"x"),
        "wrong key": agent_message(5, response_pdu(5), keys=usm.LocalKeys(KEYS.auth, bytes(32), KEYS.priv,
                                                                           KEYS.priv_key)),
        "a request, not a response": agent_message(5, response_pdu(5, GET)),
    }
    for what, data in cases.items():
        with pytest.raises(Malformed):
            opened(data)
            pytest.fail(what)
    old = _Engine()
    old.learn(ENGINE, BOOTS + 1, 0, 0.0)  # we know a later boot: this reply is a replay
    with pytest.raises(Malformed):
        CLIENT._open(old, KEYS, FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE, v3msg.parse(VALID))


# --- a fake v3 agent over the real socket: hostile replies end the poll as malformed -------------

@dataclass
class FakeV3Agent(FakeAgent):
    """The v2c fake's MIB behind USM: answers discovery properly, then GETs in ``mode``:
    normal, truncated, bad_digest, plain (unauthenticated) or garbage."""

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = v3msg.parse(data)
        if not request.engine_id:  # discovery: usmStatsUnknownEngineIDs.0 = 1
            vb = codec._tlv(0x30, codec._tlv(0x06, oid_content((1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0))) +
                            codec._tlv(0x41, b"\x01"))
            pdu = codec._tlv(REPORT, codec._int(request.msg_id) + codec._int(0) + codec._int(0) + codec._tlv(0x30, vb))
            self.transport.sendto(agent_message(request.msg_id, pdu, flags=0, keys=None), addr)
            return
        plain = usm.decrypt(KEYS, data[request.payload_start:request.payload_end], request.boots,
                            request.engine_time, request.priv_params)
        req = v3msg.parse_scoped(plain)
        v2 = self.reply(codec.Response(1, self.community, req.pdu_type, req.request_id, 0, 0, req.varbinds))
        pdu = v2[v2.index(bytes((RESPONSE,)), 5):]  # the PDU inside the v2c message the fake built
        reply = agent_message(request.msg_id, pdu, salt=request.msg_id)
        if self.mode == "truncated":
            reply = reply[:len(reply) - 7]
        elif self.mode == "bad_digest":
            message = v3msg.parse(reply)
            reply = reply[:message.mac_start] + bytes(24) + reply[message.mac_end:]
        elif self.mode == "plain":
            reply = agent_message(request.msg_id, pdu, flags=0, keys=None)
        elif self.mode == "garbage":
            reply = reply[:40] + os.urandom(len(reply) - 40)
        self.transport.sendto(reply, addr)


@pytest.mark.parametrize("mode", ["truncated", "bad_digest", "plain", "garbage"])
def test_hostile_v3_agent_gives_malformed(mode):
    from tests.snmp.test_snmp_probe import fake_mib

    async def go():
        agent = await FakeV3Agent(fake_mib(1000, 5), mode=mode).start()
        probe = Poller()
        s = SnmpSettings(version="3", port=agent.port, user="fuzzer", auth_protocol="SHA256",
                         auth_key=Secret(AUTH), priv_protocol="AES", priv_key=Secret(PRIV))
        target = FakeTarget("hostile-v3", s)
        try:
            bad = [await probe.run(target, tier(timeout=0.2, retries=1)) for _ in range(2)]
            agent.mode = "normal"
            good = await probe.run(target, tier(timeout=0.5))
            return bad, good
        finally:
            await probe.close()
            agent.close()

    bad, good = asyncio.run(go())
    assert [r.reason for r in bad] == ["malformed", "malformed"], bad
    assert good.ok, good
    assert good.sys_uptime == 10.0
