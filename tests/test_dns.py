"""The dns kind: config checks with lines, cycles against a real unbound and hostile fakes, the agent.

Every server here listens on 127.0.0.1; unbound serves static local data only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import config as config_mod
from common.errors import ConfigInvalid
from common.model import Target, Tier
from common.resolver import Resolver
from probes.dns import DnsKind
from probes.dns.config import DnsSettings
from probes.dns.exchange import Exchange
from probes.dns.probe import DnsProbe, judge
from probes.dns.result import DnsResult
from probes.registry import KINDS
from tests.dnsd import ZONE, Unbound, fake_dns, framed, reply_to
from tests.helpers import ROOT, free_port, require_tool, samples, value, wait_for

WITH_DNS = {**KINDS, "dns": DnsKind()}
TIMEOUT = 0.5


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    server = Unbound(str(tmp_path_factory.mktemp("unbound"))).start()
    try:
        yield server
    finally:
        server.stop()


# --- running one cycle ------------------------------------------------------------------------

def _settings(text: str, tmp_path) -> DnsSettings:
    """A dns block parsed by the real loader, so tests exercise the same defaults as a config file."""
    path = tmp_path / "one.yaml"
    path.write_text("tiers:\n  P1: {interval: 5s, timeout: 1s}\n"
                    f"targets:\n  - {{name: r, address: 127.0.0.1, tier: P1, probes: [dns], dns: {text}}}\n")
    return config_mod.load(str(path), WITH_DNS).targets[0].setting("dns")


def _cycle(settings: DnsSettings, address: str = "127.0.0.1", timeout: float = TIMEOUT) -> DnsResult:
    target = Target("r", address, "P1", "c", "s", (), ("dns",), (("dns", settings),))
    tier = Tier("P1", 1, 5.0, timeout, "critical")

    async def main() -> DnsResult:
        return await DnsProbe(Resolver()).run(target, tier, None)

    return asyncio.run(main())


def _phases(result: DnsResult) -> list[str]:
    return [name for name, _ in result.phases]


@pytest.mark.parametrize(("block", "reason", "answers"), [
    pytest.param("{query_name: portal.gov.example, answer_regex: '\\sA\\s192\\.0\\.2\\.10$'}", None, 1, id="found"),
    pytest.param("{query_name: PORTAL.gov.example, answer_regex: '192\\.0\\.2\\.99'}", "answer_mismatch", 1,
                 id="regex-mismatch"),
    pytest.param("{query_name: nope.gov.example}", "nxdomain", 0, id="nxdomain"),
    pytest.param("{query_name: portal.gov.example, query_type: AAAA}", "no_answer", 0, id="empty-answer"),
    pytest.param("{query_name: www.gov.example}", "no_answer", 1, id="dangling-cname"),
    pytest.param("{query_name: mail.gov.example, query_type: mx, answer_regex: 'MX 10 portal'}", None, 1, id="mx"),
    pytest.param("{query_name: example.com}", "rcode", 0, id="refused-rcode"),
    pytest.param("{query_name: nope.gov.example, valid_rcodes: [NXDOMAIN]}", None, 0, id="nxdomain-wanted"),
    pytest.param("{query_name: portal.gov.example, transport: tcp}", None, 1, id="tcp"),
])
def test_unbound_answers(unbound, tmp_path, block, reason, answers):
    block = block.replace("}", f", port: {unbound.port}}}")
    result = _cycle(_settings(block, tmp_path))
    assert (result.ok, result.reason, result.answers) == (reason is None, reason, answers), result.detail
    assert result.rcode is not None
    tcp = "transport: tcp" in block
    assert _phases(result) == (["resolve", "connect", "request"] if tcp else ["resolve", "request"])
    assert result.tcp is tcp
    assert 0 < result.duration < TIMEOUT


def test_truncated_udp_reply_falls_back_to_tcp_on_unbound(unbound, tmp_path):
    result = _cycle(_settings(f"{{query_name: big.{ZONE}, port: {unbound.port}}}", tmp_path))
    assert result.ok, result.detail
    assert result.answers == 120 and result.tcp
    assert _phases(result) == ["resolve", "request", "connect", "tcp_request"]


def test_stopped_server_is_refused_not_timeout(tmp_path):
    server = Unbound(str(tmp_path)).start()
    settings = _settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path)
    assert _cycle(settings).ok
    server.stop()
    started = time.monotonic()
    result = _cycle(settings)
    assert (result.ok, result.reason) == (False, "refused"), result.detail
    assert time.monotonic() - started < TIMEOUT  # the ICMP error ends the cycle; no wait for the deadline
    assert result.rcode is None
    tcp = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}, transport: tcp}}", tmp_path))
    assert tcp.reason == "refused", tcp.detail


def test_silent_server_times_out_at_the_deadline(tmp_path):
    with fake_dns(udp=lambda q: []) as server:
        started = time.monotonic()
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path))
        elapsed = time.monotonic() - started
        assert server.queries, "the fake saw no query"
    assert (result.ok, result.reason) == (False, "timeout")
    assert TIMEOUT - 0.01 <= elapsed < TIMEOUT + 0.3


def test_unresolvable_server_name_is_resolve(tmp_path):
    settings = _settings("{query_name: portal.gov.example}", tmp_path)
    result = _cycle(settings, address="no-such-host.invalid")
    assert result.reason == "resolve", result.detail


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP],
                         ids=lambda r: dns.rcode.to_text(r))
def test_error_rcodes_from_a_fake_are_rcode(tmp_path, rcode):
    with fake_dns(udp=lambda q: [reply_to(q, rcode).to_wire()]) as server:
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path))
    assert (result.reason, result.rcode) == ("rcode", rcode), result.detail


def test_error_rcode_can_be_valid(tmp_path):
    with fake_dns(udp=lambda q: [reply_to(q, dns.rcode.SERVFAIL).to_wire()]) as server:
        result = _cycle(_settings(f"{{query_name: x.example, port: {server.port}, valid_rcodes: [noerror, SERVFAIL]}}",
                                  tmp_path))
    assert result.ok and result.rcode == dns.rcode.SERVFAIL


def test_truncated_reply_from_a_fake_is_asked_again_over_tcp(tmp_path):
    answer = "portal.gov.example. 60 IN A 192.0.2.10"
    with fake_dns(udp=lambda q: [reply_to(q, tc=True).to_wire()],
                  tcp=lambda q: (framed(reply_to(q, answer=answer).to_wire()), False)) as server:
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path))
        assert len(server.queries) == 2
    assert result.ok and result.tcp and result.answers == 1, result.detail
    assert _phases(result) == ["resolve", "request", "connect", "tcp_request"]


def test_recursion_desired_is_sent_as_configured(tmp_path):
    with fake_dns(udp=lambda q: [reply_to(q, answer="x.example. 1 IN A 192.0.2.1").to_wire()]) as server:
        for flag in (True, False):
            text = f"{{query_name: x.example, port: {server.port}, recursion_desired: {str(flag).lower()}}}"
            assert _cycle(_settings(text, tmp_path)).ok
        rd = [bool(dns.message.from_wire(q).flags & dns.flags.RD) for q in server.queries]
    assert rd == [True, False]


# --- hostile replies ---------------------------------------------------------------------------

def _wrong_id(q: bytes) -> bytes:
    reply = reply_to(q, answer="portal.gov.example. 1 IN A 192.0.2.10")
    reply.id ^= 0x5A5A
    return reply.to_wire()


def _wrong_question(q: bytes) -> bytes:
    wire = bytearray(reply_to(q, answer="portal.gov.example. 1 IN A 192.0.2.66").to_wire())
    wire[12 + 1] = ord("q")  # the question's first label, after its length byte: "portal" -> "qortal"
    return bytes(wire)


def _not_a_response(q: bytes) -> bytes:
    return q  # the query echoed back: QR clear


HOSTILE_UDP = {
    "garbage": lambda q: [b"\xde\xad\xbe\xef" * 5],
    "short": lambda q: [q[:5]],
    "wrong-id": lambda q: [_wrong_id(q)],
    "wrong-question": lambda q: [_wrong_question(q)],
    "echo": lambda q: [_not_a_response(q)],
    "right-id-garbage-body": lambda q: [q[:2] + b"\x81\x80" + b"\xff" * 40],
}


@pytest.mark.parametrize("script", list(HOSTILE_UDP.values()), ids=list(HOSTILE_UDP))
def test_hostile_udp_replies_are_malformed_at_the_deadline(tmp_path, script):
    with fake_dns(udp=script) as server:
        started = time.monotonic()
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path))
        elapsed = time.monotonic() - started
    assert (result.ok, result.reason) == (False, "malformed"), result.detail
    assert elapsed < TIMEOUT + 0.3


def test_a_good_reply_after_bad_ones_wins(tmp_path):
    good = "portal.gov.example. 1 IN A 192.0.2.10"
    with fake_dns(udp=lambda q: [b"junk", _wrong_id(q), _wrong_question(q),
                                 reply_to(q, answer=good).to_wire()]) as server:
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}}}", tmp_path))
    assert result.ok, result.detail


HOSTILE_TCP = {
    # announces 64 KiB, sends 10 bytes and holds the connection
    "huge-length-held": (lambda q: (b"\xff\xff" + b"x" * 10, True), "malformed"),
    "huge-length-closed": (lambda q: (b"\xff\xff" + b"x" * 10, False), "malformed"),
    "garbage-frame": (lambda q: (framed(b"\x00" * 30), True), "malformed"),
    "zero-frames": (lambda q: (b"\x00\x00" * 100, True), "malformed"),
    "wrong-id-then-close": (lambda q: (framed(_wrong_id(q)), False), "malformed"),
    "closed-silently": (lambda q: (b"", False), "refused"),
    "silent-held": (lambda q: (b"", True), "timeout"),
}


@pytest.mark.parametrize(("script", "reason"), list(HOSTILE_TCP.values()), ids=list(HOSTILE_TCP))
def test_hostile_tcp_replies(tmp_path, script, reason):
    with fake_dns(tcp=script) as server:
        started = time.monotonic()
        result = _cycle(_settings(f"{{query_name: portal.gov.example, port: {server.port}, transport: tcp}}",
                                  tmp_path))
        elapsed = time.monotonic() - started
    assert (result.ok, result.reason) == (False, reason), result.detail
    assert elapsed < TIMEOUT + 0.3


QUERY = dns.message.make_query("portal.gov.example.", "A", use_edns=0, payload=1232)
GOOD = reply_to(QUERY.to_wire(), answer="portal.gov.example. 1 IN A 192.0.2.10").to_wire()
FUZZ_SETTINGS = DnsSettings(dns.name.from_text("portal.gov.example."), answer_regex=re.compile("10$"))


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, byte in edits:
        out[pos % len(out)] = byte
    return bytes(out)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=600),
    st.builds(lambda head, tail: QUERY.to_wire()[:2] + head + tail, st.binary(min_size=2, max_size=2),
              st.binary(max_size=300)),
    st.builds(_mutate, st.just(GOOD), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                              min_size=1, max_size=8)),
    st.builds(lambda n: GOOD[:n], st.integers(0, len(GOOD))),
), st.booleans())
def test_fuzz_reply_handling_never_raises(wire, udp):
    ex = Exchange(QUERY)
    reply = ex.accept(wire, udp=udp)
    if reply is None:
        assert ex.ignored == 1 and ex.last_problem
        return
    assert reply.id == QUERY.id
    result = DnsResult(ok=False)
    judge(reply, FUZZ_SETTINGS, result)
    assert result.ok or result.reason in {"rcode", "nxdomain", "no_answer", "answer_mismatch"}


# --- configuration -----------------------------------------------------------------------------

BAD = {
    "query-type": ("{query_name: a.example, query_type: AAA}",
                   "FILE:4: targets[0].dns.query_type: unknown record type 'AAA' (use a name such as A, AAAA, "
                   "CNAME, MX, NS, SOA, SRV, TXT, or TYPEnnn)"),
    "query-type-axfr": ("{query_name: a.example, query_type: AXFR}",
                        "FILE:4: targets[0].dns.query_type: 'AXFR' cannot be asked as a plain query"),
    "query-name-empty-label": ("{query_name: a..example}",
                               "FILE:4: targets[0].dns.query_name: not a valid DNS name: empty label (two dots in "
                               "a row, or a leading dot) (got 'a..example')"),
    "query-name-long-label": ("{query_name: " + "x" * 64 + ".example}",
                              "FILE:4: targets[0].dns.query_name: not a valid DNS name: a label is longer than 63 "
                              "octets (got '" + "x" * 64 + ".example')"),
    "query-name-missing": ("{query_type: A}", "FILE:4: targets[0].dns: missing required key 'query_name'"),
    "port": ("{query_name: a.example, port: 70000}", "FILE:4: targets[0].dns.port: must be between 1 and 65535 "
                                                      "(got 70000)"),
    "regex": ("{query_name: a.example, answer_regex: '(unclosed'}",
              "FILE:4: targets[0].dns.answer_regex: not a valid regular expression: missing ), unterminated "
              "subpattern at position 0"),
    "rcode": ("{query_name: a.example, valid_rcodes: [NOERROR, SERVFAILED]}",
              "FILE:4: targets[0].dns.valid_rcodes[1]: unknown rcode 'SERVFAILED'; known: "
              + ", ".join(dns.rcode.Rcode.__members__)),
    "transport": ("{query_name: a.example, transport: quic}",
                  "FILE:4: targets[0].dns.transport: must be one of udp, tcp (got 'quic')"),
    "unknown-key": ("{query_name: a.example, qtype: A}",
                    "FILE:4: targets[0].dns.qtype: unknown key (did you mean 'query_type'?)"),
    "recursion": ("{query_name: a.example, recursion_desired: yes please}",
                  "FILE:4: targets[0].dns.recursion_desired: must be true or false (got 'yes please')"),
    "timeout": ("{query_name: a.example, timeout: 10s}",
                "FILE:4: targets[0].dns.timeout: timeout (10s) must be below interval (5s)"),
    "no-block": ("", "FILE:4: targets[0].dns: 'dns' is listed in probes but the target has no 'dns' settings "
                     "(query_name is required)"),
}


@pytest.mark.parametrize(("block", "message"), list(BAD.values()), ids=list(BAD))
def test_bad_config_names_file_line_and_key(tmp_path, block, message):
    path = tmp_path / "bad.yaml"
    block = f", dns: {block}" if block else ""
    path.write_text("tiers:\n  P1: {interval: 5s, timeout: 1s}\ntargets:\n"
                    f"  - {{name: r, address: 127.0.0.1, tier: P1, probes: [dns]{block}}}\n")
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(path), WITH_DNS)
    messages = [str(e).replace(str(path), "FILE") for e in exc.value.errors]
    assert messages == [message]


def test_settings_are_frozen_and_compare_equal_across_loads(tmp_path):
    text = "{query_name: portal.gov.example, answer_regex: 'a+', valid_rcodes: [NOERROR, NXDOMAIN], timeout: 2s}"
    a, b = _settings(text, tmp_path), _settings(text, tmp_path)
    assert a == b and hash(a) == hash(b)
    assert a != _settings(text.replace("a+", "b+"), tmp_path)
    with pytest.raises(AttributeError):
        a.port = 5353  # type: ignore[misc]


# --- the agent ---------------------------------------------------------------------------------

def test_agent_exports_dns_series(unbound, agent_factory):
    require_tool("promtool", "prometheus")
    if "dns" not in KINDS:
        pytest.fail("the dns kind is not in probes/registry.py KINDS")
    port = unbound.port
    dead = free_port(socket.AF_INET, socket.SOCK_DGRAM)
    # The block's own interval and timeout beat the tier's (5s, 1s), or this would take minutes.
    fast = "interval: 500ms, timeout: 300ms"
    agent = agent_factory(
        "tiers:\n  P1: {interval: 5s, timeout: 1s}\ntargets:\n"
        f"  - {{name: portal, address: 127.0.0.1, tier: P1, probes: [dns], dns: {{query_name: portal.{ZONE}, "
        f"port: {port}, {fast}, answer_regex: '192\\.0\\.2\\.10$'}}}}\n"
        f"  - {{name: missing, address: 127.0.0.1, tier: P1, probes: [dns], dns: {{query_name: nope.{ZONE}, "
        f"port: {port}, {fast}}}}}\n"
        f"  - {{name: dead, address: 127.0.0.1, tier: P1, probes: [dns], dns: {{query_name: portal.{ZONE}, "
        f"port: {dead}, {fast}}}}}\n"
        f"  - {{name: big, address: 127.0.0.1, tier: P1, probes: [dns], dns: {{query_name: big.{ZONE}, "
        f"port: {port}, {fast}}}}}\n")

    def ready():
        s = samples(agent.metrics())
        return s if (value(s, "lifeline_dns_answers", target="portal") == 1
                     and value(s, "lifeline_probe_failures_total", target="missing", probe="dns", reason="nxdomain")
                     and value(s, "lifeline_probe_failures_total", target="dead", probe="dns", reason="refused")
                     and value(s, "lifeline_dns_tcp", target="big") == 1) else None

    s = wait_for(ready, 10, "dns series for every target")
    assert value(s, "lifeline_probe_success", target="portal", probe="dns") == 1
    assert value(s, "lifeline_target_up", target="portal") == 1
    assert value(s, "lifeline_dns_rcode", target="portal") == 0
    assert value(s, "lifeline_dns_rcode", target="missing") == dns.rcode.NXDOMAIN
    assert value(s, "lifeline_dns_answers", target="big") == 120
    assert value(s, "lifeline_probe_success", target="missing", probe="dns") == 0
    assert value(s, "lifeline_dns_answers", target="dead") is None  # no reply: no reply figures
    for phase in ("total", "resolve", "request"):
        assert value(s, "lifeline_probe_duration_seconds", target="portal", probe="dns", phase=phase) is not None
    for phase in ("connect", "tcp_request"):
        assert value(s, "lifeline_probe_duration_seconds", target="big", probe="dns", phase=phase) is not None
    text = agent.metrics()
    proc = subprocess.run([require_tool("promtool", "prometheus"), "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_config_checks_do_not_load_the_runtime():
    """`lifeline check` parses dns blocks without dnspython's message and rdata code."""
    code = ("import sys, probes.dns.kind, probes.dns.config; "
            "print(sorted(m for m in sys.modules if m in ('dns.message', 'dns.rdata', 'probes.dns.probe')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
