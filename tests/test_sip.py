"""The sip kind against a real Kamailio on loopback, fake servers for what Kamailio will not do, and the agent.

Everything listens on loopback (127.0.0.1, ::1); the one other address,
198.18.99.1, exists only as an "unreachable" route in a namespace the test
makes and removes. Kamailio answers OPTIONS itself (tests/sipd.py) and relays
nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from agent import config as config_mod
from common.errors import ConfigInvalid
from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import (REASON_CERT_EXPIRED, REASON_MALFORMED, REASON_REFUSED, REASON_RESOLVE, REASON_STATUS,
                         REASON_TIMEOUT, REASON_TLS)
from probes.registry import KINDS
from probes.service import ProbeFailure, Timing
from probes.sip.config import SipSettings
from probes.sip.kind import SipState
from probes.sip.message import STREAM_LIMIT, Request, matches, parse_datagram, read_stream_message
from probes.sip.probe import SipProbe
from probes.sip.result import SipResult
from probes.textproto import Head
from probes.tls import TlsOptions
from tests.helpers import ROOT, require_root, require_tool, value, wait_for
from tests.sipd import Kamailio

TIER = Tier(name="P1", priority=1, interval=5.0, timeout=2.0, severity="major")


def _target(settings: SipSettings, address: str = "127.0.0.1") -> Target:
    return Target(name="sbc", address=address, tier="P1", category="sbc", site="lab", labels=(), probes=("sip",),
                  settings=(("sip", settings),))


async def _probe(settings: SipSettings, address: str = "127.0.0.1", timeout: float = 2.0) -> SipResult:
    return await SipProbe(Resolver()).run(_target(settings, address), replace(TIER, timeout=timeout), SipState())


def _run(settings: SipSettings, **kwargs) -> SipResult:
    return asyncio.run(_probe(settings, **kwargs))


def _phases(result: SipResult) -> list[str]:
    return [name for name, _ in result.phases]


# --- real Kamailio ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kamailio(tmp_path_factory):
    server = Kamailio(str(tmp_path_factory.mktemp("kamailio")))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_answers_200(kamailio, transport):
    result = _run(SipSettings(port=kamailio.port, transport=transport))
    assert result.ok, result
    assert result.status_code == 200 and result.requests == 1
    assert _phases(result) == (["resolve", "response"] if transport == "udp" else ["resolve", "connect", "response"])
    assert result.duration >= sum(s for _, s in result.phases) and result.tls is None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_listed_404_is_up(kamailio, transport):
    result = _run(SipSettings(port=kamailio.port, transport=transport, to_user="nobody",
                              valid_status_codes=(200, 404)))
    assert result.ok and result.status_code == 404, result


@pytest.mark.parametrize("codes", [(), (200, 404)], ids=["default-2xx", "listed"])
def test_an_unlisted_503_is_status(kamailio, codes):
    result = _run(SipSettings(port=kamailio.port, to_user="busy", valid_status_codes=codes))
    assert not result.ok and result.reason == REASON_STATUS and result.status_code == 503, result
    assert result.detail == "503 Service Unavailable"


def test_kamailio_stopped_is_refused_then_back(tmp_path):
    server = Kamailio(str(tmp_path))
    server.start()
    try:
        assert _run(SipSettings(port=server.port)).ok
        server.stop()
        for transport in ("udp", "tcp"):
            started = time.monotonic()
            result = _run(SipSettings(port=server.port, transport=transport), timeout=2.0)
            # UDP: loopback answers with ICMP port unreachable, seen on the connected socket at once.
            assert result.reason == REASON_REFUSED and result.status_code == 0, (transport, result)
            assert time.monotonic() - started < 1.0, transport
        server.start()
        for transport in ("udp", "tcp"):
            result = _run(SipSettings(port=server.port, transport=transport))
            assert result.ok and result.status_code == 200, (transport, result)
    finally:
        server.stop()


def test_no_route_is_unreachable():
    """In a namespace of our own whose only route to 198.18.99.0/24 is "unreachable": nothing leaves it."""
    require_root()
    ns = f"llsip-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        nsexec = ["ip", "netns", "exec", ns]
        subprocess.run([*nsexec, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*nsexec, "ip", "route", "add", "unreachable", "198.18.99.0/24"], check=True)
        script = ("from tests.test_sip import _run\n"
                  "from probes.sip.config import SipSettings\n"
                  "for t in ('udp', 'tcp'):\n"
                  "    print(t, _run(SipSettings(transport=t), address='198.18.99.1', timeout=1.0).reason)\n")
        out = subprocess.run([*nsexec, sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        assert out.stdout.split() == ["udp", "unreachable", "tcp", "unreachable"], out.stdout + out.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_name_that_does_not_resolve_is_resolve():
    async def main():
        resolver = Resolver(getaddrinfo=_no_such_name)  # no DNS on this machine: fail the lookup ourselves
        return await SipProbe(resolver).run(_target(SipSettings(port=5060), "sbc.invalid"), TIER, SipState())

    result = asyncio.run(main())
    assert result.reason == REASON_RESOLVE and _phases(result) == ["resolve"]


async def _no_such_name(*args, **kwargs):
    raise OSError("no such name")


# --- fake servers -------------------------------------------------------------------------

def reply(request: bytes, status: int, reason: str = "OK", *, call_id: str | None = None,
          branch: str | None = None, compact: bool = False, body: bytes = b"") -> bytes:
    """A response to ``request`` that copies its Via, From, To, Call-ID and CSeq, with overrides."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    lines = [f"SIP/2.0 {status} {reason}"]
    for line in head.split("\r\n")[1:]:
        name, _, val = line.partition(":")
        key = name.lower()
        if key == "call-id" and call_id is not None:
            val = " " + call_id
        if key == "via" and branch is not None:
            val = val.split(";branch=")[0] + f";branch={branch};received=127.0.0.1"
        if key in ("via", "from", "to", "call-id", "cseq"):
            if compact:
                name = {"via": "v", "from": "f", "to": "t", "call-id": "i", "cseq": "CSeq"}[key]
            lines.append(f"{name}:{val}")
    lines.append(f"{'l' if compact else 'Content-Length'}: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# (request, its number) -> [(delay, bytes to send)]; None hangs up (TCP)
Answer = Callable[[bytes, int], list[tuple[float, bytes | None]]]


class FakeUdp(asyncio.DatagramProtocol):
    """A UDP SIP server on loopback that answers per ``answer`` and notes when each request came."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.host = host
        self.received: list[tuple[float, bytes]] = []

    async def __aenter__(self) -> FakeUdp:
        self.transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, local_addr=(self.host, 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.transport.close()

    def datagram_received(self, data, addr):
        loop = asyncio.get_running_loop()
        self.received.append((loop.time(), data))
        for delay, out in self.answer(data, len(self.received)):
            loop.call_later(delay, self.transport.sendto, out, addr)


class FakeTcp:
    """A TCP (or TLS) SIP server on loopback: reads one request head, writes what ``answer`` says."""

    def __init__(self, answer: Answer, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.ssl = ssl_context
        self.host = host
        self.received: list[bytes] = []

    async def __aenter__(self) -> FakeTcp:
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader, writer):
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            self.received.append(request)
            for delay, out in self.answer(request, len(self.received)):
                await asyncio.sleep(delay)
                if out is None:  # hang up
                    return
                writer.write(out)
                await writer.drain()
            await reader.read()  # hold the connection until the probe hangs up
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()


def _against(server_factory, settings: SipSettings, timeout: float = 2.0, address: str = "127.0.0.1"):
    async def main():
        async with server_factory as server:
            result = await _probe(replace(settings, port=server.port), address, timeout)
            return result, server
    return asyncio.run(main())


TRYING_THEN_OK: Answer = lambda req, n: [(0, reply(req, 100, "Trying")), (0.3, reply(req, 200))]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_provisional_answer_is_not_final(transport):
    server = FakeUdp(TRYING_THEN_OK) if transport == "udp" else FakeTcp(TRYING_THEN_OK)
    result, _ = _against(server, SipSettings(transport=transport))
    assert result.ok and result.status_code == 200, result
    assert dict(result.phases)["response"] >= 0.29


def test_a_provisional_answer_slows_retransmits_to_t2():
    # Once a 1xx came, RFC 3261 timer E fires every T2 (4 s) after its running T1 period:
    # requests at 0 and 0.5 s, not the third at 1.5 s that silence gets.
    result, server = _against(FakeUdp(lambda req, n: [(0, reply(req, 100, "Trying"))]), SipSettings(), timeout=2.0)
    assert result.reason == REASON_TIMEOUT and result.requests == len(server.received) == 2, result


def test_compact_headers_and_a_body_are_understood():
    answer: Answer = lambda req, n: [(0, reply(req, 200, compact=True, body=b"v=0\r\n"))]
    for server in (FakeUdp(answer), FakeTcp(answer)):
        result, _ = _against(server, SipSettings(transport="udp" if isinstance(server, FakeUdp) else "tcp"))
        assert result.ok, result


MISMATCHES = {
    "call-id": lambda req, n: [(0, reply(req, 200, call_id="someone-else"))],
    "branch": lambda req, n: [(0, reply(req, 200, branch="z9hG4bKother"))],
    "cseq": lambda req, n: [(0, reply(req, 200).replace(b" OPTIONS\r\n", b" INVITE\r\n"))],
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("field", sorted(MISMATCHES))
def test_an_answer_to_another_request_is_ignored(transport, field):
    answer = MISMATCHES[field]
    server = FakeUdp(answer) if transport == "udp" else FakeTcp(answer)
    started = time.monotonic()
    result, _ = _against(server, SipSettings(transport=transport), timeout=1.0)
    assert result.reason == REASON_TIMEOUT and result.status_code == 0, result
    assert time.monotonic() - started < 1.5


def test_udp_retransmits_on_timer_a_until_the_deadline():
    result, server = _against(FakeUdp(lambda req, n: []), SipSettings(), timeout=2.0)
    assert result.reason == REASON_TIMEOUT and result.status_code == 0, result
    assert 1.95 < result.duration < 2.5
    # Sent at 0, 0.5 and 1.5 s (T1 doubling); the same request each time, same branch.
    times = [t for t, _ in server.received]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert result.requests == len(server.received) == 3, gaps
    assert 0.45 < gaps[0] < 0.8 and 0.95 < gaps[1] < 1.3, gaps
    assert len({data for _, data in server.received}) == 1


def test_a_lost_request_is_answered_on_retransmit():
    result, server = _against(FakeUdp(lambda req, n: [] if n == 1 else [(0, reply(req, 200))]), SipSettings())
    assert result.ok and result.requests == 2 and 0.45 < dict(result.phases)["response"] < 0.9, result


def test_fresh_branch_call_id_and_tag_every_cycle():
    async def main():
        async with FakeUdp(lambda req, n: [(0, reply(req, 200))]) as server:
            probe, settings = SipProbe(Resolver()), SipSettings(port=server.port)
            for _ in range(2):
                assert (await probe.run(_target(settings), TIER, SipState())).ok
            return [data for _, data in server.received]

    first, second = asyncio.run(main())
    for field in (b"branch=z9hG4bK", b"Call-ID: ", b"tag="):
        assert _after(first, field) != _after(second, field), field
    text = first.decode()
    assert text.startswith("OPTIONS sip:127.0.0.1:")
    for header in ("Via: SIP/2.0/UDP 127.0.0.1:", ";rport;branch=z9hG4bK", "Max-Forwards: 70\r\n",
                   "From: <sip:lifeline@127.0.0.1>;tag=", "To: <sip:127.0.0.1:", "CSeq: 1 OPTIONS\r\n",
                   "Contact: <sip:lifeline@127.0.0.1:", "User-Agent: lifeline\r\n", "Accept: application/sdp\r\n",
                   "Content-Length: 0\r\n\r\n"):
        assert header in text, header


def _after(data: bytes, marker: bytes) -> bytes:
    return data.split(marker, 1)[1].split(b"\r\n", 1)[0]


def test_users_and_domain_go_into_the_request():
    settings = SipSettings(transport="tcp", from_user="mon", to_user="ping", from_domain="lifeline.example")
    result, server = _against(FakeTcp(lambda req, n: [(0, reply(req, 200))]), settings)
    text = server.received[0].decode()
    assert result.ok
    assert text.startswith("OPTIONS sip:ping@127.0.0.1:") and text.split("\r\n")[0].endswith(";transport=tcp SIP/2.0")
    assert "From: <sip:mon@lifeline.example>;tag=" in text and "To: <sip:ping@127.0.0.1:" in text
    assert "Via: SIP/2.0/TCP 127.0.0.1:" in text and "Contact: <sip:mon@127.0.0.1:" in text


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ipv6_literals_are_bracketed(transport):
    answer: Answer = lambda req, n: [(0, reply(req, 200))]
    server = FakeUdp(answer, "::1") if transport == "udp" else FakeTcp(answer, host="::1")
    result, server = _against(server, SipSettings(transport=transport), address="::1")
    request = (server.received[0][1] if transport == "udp" else server.received[0]).decode()
    assert result.ok, result
    assert request.startswith("OPTIONS sip:[::1]:") and f"Via: SIP/2.0/{transport.upper()} [::1]:" in request
    assert "From: <sip:lifeline@[::1]>;tag=" in request


def test_udp_garbage_is_malformed():
    result, _ = _against(FakeUdp(lambda req, n: [(0, b"\x00\xff not sip at all")]), SipSettings(), timeout=1.0)
    assert result.reason == REASON_MALFORMED and result.status_code == 0, result


@pytest.mark.parametrize("garbage", [b"HELLO THERE\r\n\r\n", b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
                                     b"SIP/2.0 999 Odd\r\n\r\n", b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n"],
                         ids=["not-sip", "bad-header", "status-999", "bad-length"])
def test_tcp_garbage_is_malformed_at_once(garbage):
    started = time.monotonic()
    result, _ = _against(FakeTcp(lambda req, n: [(0, garbage)]), SipSettings(transport="tcp"), timeout=2.0)
    assert result.reason == REASON_MALFORMED, result
    assert time.monotonic() - started < 1.0


def test_tcp_endless_headers_are_malformed_within_the_limit():
    pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    answer: Answer = lambda req, n: [(0, b"SIP/2.0 200 OK\r\n")] + [(0, pad)] * 200
    started = time.monotonic()
    result, _ = _against(FakeTcp(answer), SipSettings(transport="tcp"), timeout=2.0)
    assert result.reason == REASON_MALFORMED and "headers over" in result.detail, result
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("sent", [b"", b"SIP/2.0 100 Trying\r\n"], ids=["nothing", "part-of-a-head"])
def test_tcp_hang_up_before_the_final_answer_is_malformed(sent):
    result, _ = _against(FakeTcp(lambda req, n: [(0, sent), (0, None)]), SipSettings(transport="tcp"), timeout=1.0)
    assert result.reason == REASON_MALFORMED and "connection closed" in result.detail, result


def test_tcp_silence_times_out_within_the_deadline():
    result, _ = _against(FakeTcp(lambda req, n: []), SipSettings(transport="tcp"), timeout=0.5)
    assert result.reason == REASON_TIMEOUT and 0.45 < result.duration < 0.8, result


# --- TLS ----------------------------------------------------------------------------------

def _certs(tmp_path, *, expired: bool = False) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it; (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifeline test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=10))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    not_after = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=20)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sbc")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(0x5A1B)
            .not_valid_before(now - datetime.timedelta(days=5)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("sbc.lifeline.test")]), critical=False).sign(ca_key, hashes.SHA256()))
    paths = tuple(str(tmp_path / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return paths


def _server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.mark.parametrize("server_name", [None, "sbc.lifeline.test"], ids=["address", "server-name"])
def test_tls_success_shows_the_chain(tmp_path, server_name):
    ca, cert, key = _certs(tmp_path)
    settings = SipSettings(transport="tls", tls=TlsOptions(ca_file=ca, server_name=server_name))
    result, server = _against(FakeTcp(lambda req, n: [(0, reply(req, 200))], _server_context(cert, key)), settings)
    assert result.ok and _phases(result) == ["resolve", "connect", "tls", "response"], result
    assert result.tls is not None and result.tls.serial == "5a1b" and "sbc" in result.tls.subject
    assert b"Via: SIP/2.0/TLS " in server.received[0] and b";transport=tls SIP/2.0\r\n" in server.received[0]


@pytest.mark.parametrize("case", ["expired", "unknown-ca", "wrong-name"])
def test_tls_failures(tmp_path, case):
    ca, cert, key = _certs(tmp_path, expired=case == "expired")
    options = {"expired": TlsOptions(ca_file=ca), "unknown-ca": TlsOptions(),  # the system store lacks our CA
               "wrong-name": TlsOptions(ca_file=ca, server_name="other.lifeline.test")}[case]
    result, _ = _against(FakeTcp(lambda req, n: [(0, reply(req, 200))], _server_context(cert, key)),
                         SipSettings(transport="tls", tls=options))
    assert result.reason == (REASON_CERT_EXPIRED if case == "expired" else REASON_TLS), result
    assert result.status_code == 0


# --- parsing and matching, fuzzed ---------------------------------------------------------

REQUEST = Request(b"", call_id="a84b4c76e66710", cseq=1, branch="z9hG4bK776asdhds")
OK = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;rport=5062;branch=z9hG4bK776asdhds\r\n"
      b"Call-ID: a84b4c76e66710\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_the_reference_response_matches():
    head = parse_datagram(OK)
    assert head is not None and head.status == 200 and matches(head, REQUEST)
    assert parse_datagram(b"\r\n\r\n") is None  # a keep-alive


@given(st.binary(max_size=2000))
@hsettings(max_examples=400, deadline=None)
def test_any_datagram_parses_or_is_malformed(data):
    try:
        head = parse_datagram(data)
    except ProbeFailure as exc:
        assert exc.reason == REASON_MALFORMED
        return
    if head is not None:
        assert 100 <= head.status <= 699
        matches(head, REQUEST)  # never raises


@given(st.integers(0, len(OK) - 1), st.binary(min_size=1, max_size=4))
@hsettings(max_examples=400, deadline=None)
def test_a_response_matches_only_with_our_ids_intact(pos, junk):
    data = OK[:pos] + junk + OK[pos + len(junk):]
    try:
        head = parse_datagram(data)
    except ProbeFailure:
        return
    if head is not None and matches(head, REQUEST):
        # Header names may change case and white space may differ (both legal); the ids may not.
        assert b"a84b4c76e66710" in data and b"z9hG4bK776asdhds" in data and re.search(rb"1\s+OPTIONS", data)


NAME_CASE = st.sampled_from([str.lower, str.upper, str.title])


@given(st.sampled_from(["Via", "v"]), st.sampled_from(["Call-ID", "i"]), NAME_CASE, st.integers(200, 699),
       st.lists(st.tuples(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True),
                          st.from_regex(r"[ -~]{0,30}", fullmatch=True)), max_size=5),
       st.sampled_from(["", " ", "  "]), st.booleans())
@hsettings(max_examples=300, deadline=None)
def test_any_legal_spelling_of_our_ids_matches(via, call_id, case, status, extra, space, second_via):
    vias = f"SIP/2.0/UDP 127.0.0.1:5062;rport=5062;{case('branch')}=z9hG4bK776asdhds;received=127.0.0.1"
    if second_via:  # a proxy's Via below ours; only the top one counts
        vias += ", SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKproxy"
    lines = [f"SIP/2.0 {status} Whatever", f"{case(via)}:{space}{vias}", *[f"{k}: {v}" for k, v in extra],
             f"{case(call_id)}:{space}a84b4c76e66710", f"{case('CSeq')}: 1 OPTIONS"]
    head = parse_datagram(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert head is not None and matches(head, REQUEST), lines
    assert not matches(head, replace(REQUEST, call_id="a84b4c76e66711"))
    assert not matches(head, replace(REQUEST, branch="z9hG4bKproxy"))
    assert not matches(head, replace(REQUEST, cseq=2))


@given(st.lists(st.binary(min_size=1, max_size=3000), max_size=12))
@hsettings(max_examples=200, deadline=None)
def test_any_stream_reads_a_response_or_is_malformed(chunks):
    async def main():
        reader = asyncio.StreamReader(limit=STREAM_LIMIT)
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        heads = []
        try:
            while True:
                heads.append(await read_stream_message(reader))
        except ProbeFailure as exc:
            assert exc.reason == REASON_MALFORMED
        return heads

    for head in asyncio.run(main()):
        assert isinstance(head, Head) and 100 <= head.status <= 699


# --- configuration ------------------------------------------------------------------------

def _load(tmp_path, block: str):
    path = tmp_path / "lifeline.yaml"
    path.write_text("targets:\n"
                    "  - name: sbc\n"
                    "    address: 127.0.0.1\n"
                    "    tier: P1\n"
                    "    probes: [sip]\n"
                    f"    sip: {block}\n")
    return str(path), lambda: config_mod.load(str(path), KINDS)


@pytest.mark.parametrize("block, message", [
    ("{transport: sctp}", "FILE:6: targets[0].sip.transport: must be one of udp, tcp, tls (got 'sctp')"),
    ("{port: 70000}", "FILE:6: targets[0].sip.port: must be between 1 and 65535 (got 70000)"),
    ("{valid_status_codes: [200, 700]}",
     "FILE:6: targets[0].sip.valid_status_codes[1]: must be between 100 and 699 (got 700)"),
    ("{valid_status_codes: [180]}",
     "FILE:6: targets[0].sip.valid_status_codes[0]: 180 is provisional: the probe waits for a final response "
     "(200 to 699)"),
    ("{valid_status_codes: []}", "FILE:6: targets[0].sip.valid_status_codes: must list at least one status code "
                                 "(leave the key out to accept any 2xx)"),
    ("{to_usr: ping}", "FILE:6: targets[0].sip.to_usr: unknown key (did you mean 'to_user'?)"),
    ("{to_user: 'a@b'}", "FILE:6: targets[0].sip.to_user: not a SIP user part: letters, digits and "
                         "-_.!~*'()&=+$,;?/ or %XX (got 'a@b')"),
    ("{tls: {insecure_skip_verify: true}}", "FILE:6: targets[0].sip.tls: applies only to transport: tls "
                                            "(got transport: udp)"),
    ("{timeout: 20s}", "FILE:6: targets[0].sip.timeout: timeout (20s) must be below interval (15s)"),
], ids=["transport", "port", "status-range", "status-provisional", "status-empty", "unknown-key", "user",
        "tls-on-udp", "timeout"])
def test_bad_settings_name_file_and_line(tmp_path, block, message):
    path, load = _load(tmp_path, block)
    with pytest.raises(ConfigInvalid) as exc:
        load()
    messages = [str(e).replace(path, "FILE") for e in exc.value.errors]
    assert messages == [message]


def test_settings_defaults_and_tls_port(tmp_path):
    _, load = _load(tmp_path, "{transport: tls, to_user: ping, valid_status_codes: [404, 200, 200], timeout: 1s}")
    target = load().targets[0]
    settings = target.setting("sip")
    assert settings == SipSettings(port=5061, transport="tls", valid_status_codes=(200, 404), to_user="ping",
                                   tls=TlsOptions(), timing=Timing(None, 1.0))
    _, load = _load(tmp_path, "null")
    assert load().targets[0].setting("sip") == SipSettings()
    assert SipSettings().accepts(202) and not SipSettings().accepts(404)


# --- the agent ----------------------------------------------------------------------------

def test_the_agent_exports_sip(agent_factory, kamailio):
    port = kamailio.port
    agent = agent_factory(
        "tiers:\n  P1: {interval: 1s, timeout: 500ms, packets: 1}\n"
        "targets:\n"
        f"  - {{name: sbc-udp, address: 127.0.0.1, tier: P1, probes: [sip], sip: {{port: {port}}}}}\n"
        f"  - {{name: sbc-tcp, address: 127.0.0.1, tier: P1, probes: [sip], "
        f"sip: {{port: {port}, transport: tcp, to_user: nobody, valid_status_codes: [404]}}}}\n"
        f"  - {{name: sbc-busy, address: 127.0.0.1, tier: P1, probes: [sip], sip: {{port: {port}, to_user: busy}}}}\n")

    def ready():
        text = agent.metrics()
        return text if value(text, "lifeline_sip_status_code", target="sbc-busy") is not None and \
            value(text, "lifeline_sip_status_code", target="sbc-tcp") is not None and \
            value(text, "lifeline_sip_status_code", target="sbc-udp") is not None else None

    text = wait_for(ready, 10, "all three SIP targets probed")
    assert value(text, "lifeline_sip_status_code", target="sbc-udp", tier="P1") == 200
    assert value(text, "lifeline_sip_status_code", target="sbc-tcp") == 404
    assert value(text, "lifeline_sip_status_code", target="sbc-busy") == 503
    assert value(text, "lifeline_probe_success", target="sbc-udp", probe="sip") == 1
    assert value(text, "lifeline_probe_success", target="sbc-tcp", probe="sip") == 1
    assert value(text, "lifeline_probe_success", target="sbc-busy", probe="sip") == 0
    assert value(text, "lifeline_target_up", target="sbc-busy") == 0
    assert value(text, "lifeline_probe_failures_total", target="sbc-busy", probe="sip", reason="status") >= 1
    for phase in ("total", "resolve", "response"):
        assert value(text, "lifeline_probe_duration_seconds", target="sbc-udp", probe="sip", phase=phase) is not None
    assert value(text, "lifeline_probe_duration_seconds", target="sbc-tcp", probe="sip", phase="connect") is not None
    promtool = require_tool("promtool", "prometheus")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
