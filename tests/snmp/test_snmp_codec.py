"""The v1/v2c codec: byte-identical to pysnmp's encoder, and hostile input only ever raises Malformed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.snmp import codec
from probes.snmp.walk import wrap_aware_reboot
from tests.snmp.agents import FakeAgent, counter64, octets, ticks

OIDS = st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12).map(lambda t: (1, 3) + tuple(t))


def test_request_matches_pysnmp_encoding():
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api
    from pysnmp.proto.rfc1902 import ObjectName

    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p.GetRequestPDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, 1234567)
    p.apiPDU.set_varbinds(pdu, [(ObjectName("1.3.6.1.2.1.1.3.0"), p.Null("")),
                                (ObjectName("1.3.6.1.4.1.2011.4294967295.0"), p.Null(""))])
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, "public")
    p.apiMessage.set_pdu(msg, pdu)
    vbs = b"".join(codec.varbind_null(codec.oid_content(o))
                   for o in ((1, 3, 6, 1, 2, 1, 1, 3, 0), (1, 3, 6, 1, 4, 1, 2011, 2**32 - 1, 0)))
    assert codec.encode_request(1, b"public", codec.GET, 1234567, vbs) == encoder.encode(msg)


@given(OIDS)
def test_oid_round_trip(arcs):
    assert codec.oid_arcs(codec.oid_content(arcs)) == arcs


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_malformed(data):
    try:
        codec.decode(data)
    except codec.Malformed:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_replies_only_raise_malformed(data):
    agent = FakeAgent({(1, 3, 6, 1, 2, 1, 1, 3, 0): ticks(99), (1, 3, 6, 1, 2, 1, 1, 5, 0): octets("x"),
                       (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1): counter64(2**64 - 1)})
    req = codec.decode(codec.encode_request(1, b"fake", codec.GETBULK, 7, codec.varbind_null(
        codec.oid_content((1, 3, 6))), 0, 5))
    reply = bytearray(agent.reply(req))
    decoded = codec.decode(bytes(reply))
    assert decoded.varbinds[2] == (codec.oid_content((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1)), 2**64 - 1)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(reply) - 1))
        reply[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(reply)))
    try:
        codec.decode(bytes(reply[:cut]))
    except codec.Malformed:
        pass


def test_uptime_wrap_is_not_a_reboot():
    assert not wrap_aware_reboot(2**32 - 1000, 2000, 30.0)  # wrapped after 497 days
    assert wrap_aware_reboot(500_000, 300, 30.0)
    assert not wrap_aware_reboot(500_000, 503_000, 30.0)
    assert wrap_aware_reboot(2**32 - 1000, 2**31, 30.0)  # near the wrap but far too low: reboot
