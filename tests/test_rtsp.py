"""The rtsp kind: against gst-rtsp-server on loopback, hostile fake servers, bad configs and the agent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from agent.cli import main as cli_main
from agent.config import load
from common.errors import ConfigInvalid
from common.model import Target, Tier
from common.resolver import Resolver
from probes.registry import KINDS
from probes.rtsp.auth import Challenge, Digest, answer, parse_challenges
from probes.rtsp.config import RtspSettings, Secret
from probes.rtsp.probe import RtspProbe, RtspResult, Session, exchange
from probes.service import Phases, ProbeFailure
from tests.helpers import (ROOT, free_port, require_root, require_tool, samples, stop_process, value,
                           wait_for)

PASSWORD = "Cam-pass-7Hq2x"  # must never show in errors, logs or /metrics
USER = "viewer"
REASONS = {"timeout", "refused", "resolve", "malformed", "unreachable", "send_error", "auth", "status",
           "body_mismatch"}
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\n"


# --- the real server ------------------------------------------------------------------------------

def _options_answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(f"OPTIONS rtsp://127.0.0.1:{port}/stream1 RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        return s.recv(100).startswith(b"RTSP/1.0 200")


@contextlib.contextmanager
def gst_server() -> Iterator[dict[str, int]]:
    """gst-rtsp-server (system Python) with an open, a Basic and a Digest port; stopped on exit."""
    python = "/usr/bin/python3"  # Debian's GStreamer bindings live in the system Python, not the venv
    if not os.path.exists(python):
        raise AssertionError("/usr/bin/python3 is missing: apt-get install -y python3")
    check = subprocess.run([python, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                          "from gi.repository import GstRtspServer"], capture_output=True)
    if check.returncode != 0:
        raise AssertionError("gst-rtsp-server is not importable from /usr/bin/python3: apt-get install -y "
                             "python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good")
    ports = {"open": free_port(), "basic": free_port(), "digest": free_port()}
    log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen([python, os.path.join(ROOT, "tests", "rtsp_server.py"), "--open", str(ports["open"]),
                             "--basic", str(ports["basic"]), "--digest", str(ports["digest"])],
                            env={"PATH": "/usr/bin:/bin", "RTSP_TEST_PASSWORD": PASSWORD},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def answering() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"rtsp_server.py exited: {log.read().decode(errors='replace')}")
            return all(_options_answers(p) for p in ports.values())
        wait_for(answering, 20, "rtsp_server.py to answer OPTIONS")
        yield ports
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def gst() -> Iterator[dict[str, int]]:
    with gst_server() as ports:
        yield ports


def _settings(url: str, port: int, password: str | None = None, codes: tuple[int, ...] = (200,)) -> RtspSettings:
    return RtspSettings(url=url, port=port, username=USER if password else None,
                        password=Secret(password, "test") if password else None, valid_status_codes=codes)


async def _no_dns(host, port, **kwargs):
    raise OSError("tests never query DNS")


async def probe_once(s: RtspSettings, timeout: float = 3.0, address: str = "127.0.0.1") -> RtspResult:
    tier = Tier(name="P0", priority=0, interval=timeout * 2, timeout=timeout, severity="critical")
    target = Target(name="cam", address=address, tier="P0", category="camera", site="lab", labels=(),
                    probes=("rtsp",), settings=(("rtsp", s),))
    return await RtspProbe(Resolver(getaddrinfo=_no_dns)).run(target, tier, None)


def run(s: RtspSettings, timeout: float = 3.0) -> RtspResult:
    return asyncio.run(probe_once(s, timeout))


def _url(port: int, path: str = "stream1") -> str:
    return f"rtsp://127.0.0.1:{port}/{path}"


def test_describe_on_a_real_server_is_up_with_every_phase(gst):
    r = run(_settings(_url(gst["open"]), gst["open"]))
    assert (r.ok, r.reason, r.status) == (True, None, 200), r.detail
    assert [name for name, _ in r.phases] == ["resolve", "connect", "options", "describe"]
    assert r.duration >= sum(s for _, s in r.phases) > 0


def test_a_wrong_path_is_a_status_failure(gst):
    r = run(_settings(_url(gst["open"], "nope"), gst["open"]))
    assert (r.ok, r.reason, r.status) == (False, "status", 404)


def test_other_status_codes_can_count_as_up(gst):
    r = run(_settings(_url(gst["open"], "nope"), gst["open"], codes=(200, 404)))
    assert (r.ok, r.status) == (True, 404)


@pytest.mark.parametrize("scheme", ["basic", "digest"])
def test_auth_mounts(gst, scheme):
    port = gst[scheme]
    r = run(_settings(_url(port), port))
    assert (r.ok, r.reason, r.status) == (False, "auth", 401)
    r = run(_settings(_url(port), port, password=PASSWORD))
    assert (r.ok, r.reason, r.status) == (True, None, 200), r.detail
    r = run(_settings(_url(port), port, password="wrong-password"))
    assert (r.ok, r.reason, r.status) == (False, "auth", 401)
    assert PASSWORD not in r.detail and "wrong-password" not in r.detail


def test_a_stopped_server_is_refused():
    with gst_server() as ports:
        s = _settings(_url(ports["open"]), ports["open"])
        assert run(s).ok
    r = run(s)
    assert (r.ok, r.reason, r.status) == (False, "refused", 0)
    assert [name for name, _ in r.phases] == ["resolve"]


def test_an_unresolvable_address_is_resolve():
    r = asyncio.run(probe_once(_settings("rtsp://cam.invalid/stream1", 554), address="cam.invalid"))
    assert (r.ok, r.reason, [name for name, _ in r.phases]) == (False, "resolve", ["resolve"])


def test_no_route_is_unreachable(tmp_path):
    """In a namespace of our own with only loopback, 198.18.0.1 has no route: ENETUNREACH at connect."""
    require_root()
    ns = f"llrtsp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        code = ("import asyncio; from tests.test_rtsp import probe_once, _settings; "
                "r = asyncio.run(probe_once(_settings('rtsp://198.18.0.1/s', 554), address='198.18.0.1')); "
                "print(r.reason, r.status)")
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ["unreachable", "0"], out.stdout + out.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# --- fake servers: hostile and odd replies ----------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


def reply(status: str, cseq: str, headers: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{headers}{length}\r\n".encode() + body


def well_behaved(describe: Callable[[str, dict[str, str]], bytes]) -> Handler:
    """OPTIONS gets 200; each DESCRIBE gets what ``describe(request line, headers)`` returns."""
    async def handle(reader, writer):
        try:
            while True:
                line, headers = await read_request(reader)
                if line.startswith("OPTIONS"):
                    writer.write(reply("200 OK", headers["cseq"], "Public: OPTIONS, DESCRIBE\r\n"))
                else:
                    writer.write(describe(line, headers))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return handle


async def against(handler: Handler, s_kwargs: dict | None = None, timeout: float = 1.0) -> RtspResult:
    tasks: set[asyncio.Task] = set()

    async def tracked(reader, writer):  # so teardown can cancel handlers that never end
        tasks.add(asyncio.current_task())
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe_once(_settings(_url(port), port, **(s_kwargs or {})), timeout=timeout)
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def sdp_ok(line, headers):
    return reply("200 OK", headers["cseq"], "Content-Type: application/sdp\r\n", SDP)


async def _garbage(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HELLO THERE\r\n\r\n")


async def _http(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


async def _endless_headers(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n")
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(b"X-Filler: " + b"a" * 100 + b"\r\n")
            await writer.drain()


async def _slowloris(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for byte in b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)


async def _silent(reader, writer):
    await asyncio.sleep(3600)


async def _hang_up(reader, writer):
    writer.close()


async def _reset(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.abort()


async def _wrong_cseq(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(reply("200 OK", "7"))


async def _huge_body(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 1000000000\r\n\r\n")


async def _short_body(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 100\r\n\r\nv=0\r\n")
    writer.close()


FAILURES = [
    pytest.param(_garbage, "malformed", 0, id="garbage-status-line"),
    pytest.param(_http, "malformed", 0, id="http-reply"),
    pytest.param(_endless_headers, "malformed", 0, id="endless-headers"),
    pytest.param(_slowloris, "timeout", 0, id="slowloris"),
    pytest.param(_silent, "timeout", 0, id="never-answers"),
    pytest.param(_hang_up, "malformed", 0, id="hangs-up"),
    pytest.param(_reset, "malformed", 0, id="resets"),
    pytest.param(_wrong_cseq, "malformed", 0, id="wrong-cseq"),
    pytest.param(_huge_body, "malformed", 0, id="huge-content-length"),
    pytest.param(_short_body, "malformed", 0, id="body-cut-short"),
    pytest.param(well_behaved(lambda line, h: reply("200 OK", h["cseq"], "Content-Type: text/html\r\n",
                                                    b"<html>login</html>")),
                 "body_mismatch", 200, id="html-body"),
    pytest.param(well_behaved(lambda line, h: reply("200 OK", h["cseq"], "Content-Type: application/sdp\r\n",
                                                    b"hello")),
                 "body_mismatch", 200, id="sdp-type-not-sdp-body"),
    pytest.param(well_behaved(lambda line, h: reply("200 OK", h["cseq"])), "body_mismatch", 200, id="no-body"),
    pytest.param(well_behaved(lambda line, h: reply("503 Service Unavailable", h["cseq"])), "status", 503,
                 id="503"),
    pytest.param(well_behaved(lambda line, h: reply("401 Unauthorized", h["cseq"],
                                                    'WWW-Authenticate: Basic realm="cam"\r\n')),
                 "auth", 401, id="401-without-credentials"),
]


@pytest.mark.parametrize("handler,reason,status", FAILURES)
def test_hostile_and_odd_servers_give_a_reason_within_the_deadline(handler, reason, status):
    started = time.monotonic()
    r = asyncio.run(against(handler, timeout=0.5))
    elapsed = time.monotonic() - started
    assert (r.ok, r.reason, r.status) == (False, reason, status), r.detail
    assert r.duration < 0.75 and elapsed < 2, (r.duration, elapsed)


def test_sdp_with_parameters_and_a_leading_blank_line_is_up():
    r = asyncio.run(against(well_behaved(lambda line, h: reply(
        "200 OK", h["cseq"], "Content-Type: Application/SDP; charset=utf-8\r\n", b"\r\n" + SDP))))
    assert (r.ok, r.status) == (True, 200), r.detail


# --- auth against fakes: Basic, Digest with and without qop, once only ------------------------------

def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _params(header: str) -> dict[str, str]:
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header)}


def digest_server(challenge: str, seen: list[dict[str, str]], realm="cam", nonce="abc123") -> Handler:
    """Checks Digest answers the way a camera does: RFC 2617, with qop when it offered one."""
    def describe(line, headers):
        method, uri = line.split()[:2]
        auth = headers.get("authorization", "")
        if auth.startswith("Digest "):
            p = _params(auth[7:])
            seen.append(p)
            ha1, ha2 = _md5(f"{p['username']}:{realm}:{PASSWORD}"), _md5(f"{method}:{uri}")
            if "qop" in p:
                expected = _md5(f"{ha1}:{nonce}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
            else:
                expected = _md5(f"{ha1}:{nonce}:{ha2}")
            if p["response"] == expected and p["uri"] == uri and p["nonce"] == nonce:
                return reply("200 OK", headers["cseq"], "Content-Type: application/sdp\r\n", SDP)
        return reply("401 Unauthorized", headers["cseq"], f"WWW-Authenticate: {challenge}\r\n")
    return well_behaved(describe)


@pytest.mark.parametrize("challenge", [
    pytest.param('Digest realm="cam", nonce="abc123"', id="rfc2069-no-qop"),
    pytest.param('Digest realm="cam", nonce="abc123", qop="auth", opaque="xyz", algorithm=MD5', id="qop-auth"),
    pytest.param('Basic realm="cam", Digest realm="cam", nonce="abc123", qop="auth-int,auth"',
                 id="basic-and-digest-in-one-header"),
])
def test_digest_answers(challenge):
    seen: list[dict[str, str]] = []
    r = asyncio.run(against(digest_server(challenge, seen), {"password": PASSWORD}))
    assert (r.ok, r.status) == (True, 200), r.detail
    assert len(seen) == 1 and seen[0]["username"] == USER
    if "opaque" in challenge:
        assert seen[0]["opaque"] == "xyz" and seen[0]["nc"] == "00000001"


def test_digest_matches_the_rfc_2617_example():
    challenge = Challenge("digest", {"realm": "testrealm@host.com", "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                                     "qop": "auth,auth-int", "opaque": "5ccc069c403ebaf9f0171e9517f40e41"})
    header = Digest(challenge, "Mufasa", "Circle Of Life", "MD5", "auth", cnonce="0a4f113b").header(
        "GET", "/dir/index.html")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'qop=auth, nc=00000001, cnonce="0a4f113b"' in header


def test_a_wrong_digest_password_is_answered_once():
    seen: list[dict[str, str]] = []
    r = asyncio.run(against(digest_server('Digest realm="cam", nonce="abc123"', seen), {"password": "nope"}))
    assert (r.ok, r.reason, r.status) == (False, "auth", 401)
    assert len(seen) == 1


def test_basic_answer():
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    r = asyncio.run(against(well_behaved(lambda line, h: (
        reply("200 OK", h["cseq"], "Content-Type: application/sdp\r\n", SDP) if h.get("authorization") == expected
        else reply("401 Unauthorized", h["cseq"], 'WWW-Authenticate: Basic realm="cam"\r\n'))),
        {"password": PASSWORD}))
    assert (r.ok, r.status) == (True, 200), r.detail


def test_unsupported_challenge_is_auth():
    r = asyncio.run(against(well_behaved(lambda line, h: reply(
        "401 Unauthorized", h["cseq"], 'WWW-Authenticate: Bearer realm="cam"\r\n')), {"password": PASSWORD}))
    assert (r.ok, r.reason, r.status) == (False, "auth", 401)
    assert "no Basic or Digest challenge" in r.detail


def test_an_options_challenge_is_answered_and_reused_for_describe():
    seen = []

    async def handle(reader, writer):
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line, h = await read_request(reader)
                auth = h.get("authorization")
                seen.append((line.split()[0], _params(auth[7:]).get("nc") if auth else None))
                if auth is None:
                    writer.write(reply("401 Unauthorized", h["cseq"],
                                       'WWW-Authenticate: Digest realm="cam", nonce="n1", qop="auth"\r\n'))
                elif line.startswith("OPTIONS"):
                    writer.write(reply("200 OK", h["cseq"]))
                else:
                    writer.write(reply("200 OK", h["cseq"], "Content-Type: application/sdp\r\n", SDP))
    r = asyncio.run(against(handle, {"password": PASSWORD}))
    assert r.ok, r.detail
    assert seen == [("OPTIONS", None), ("OPTIONS", "00000001"), ("DESCRIBE", "00000002")]


# --- fuzz: any bytes from the server end in a result, never an exception ----------------------------

class _Sink:
    def write(self, data: bytes) -> None:
        pass


async def _session_on(data: bytes, password: str | None) -> tuple[bool, str | None]:
    reader = asyncio.StreamReader(limit=16 * 1024)
    reader.feed_data(data)
    reader.feed_eof()
    s = _settings("rtsp://127.0.0.1/stream1", 554, password=password)
    result = RtspResult(ok=False)
    try:
        async with asyncio.timeout(2):  # everything is buffered: nothing may wait
            await exchange(Session(reader, _Sink(), s), Phases.start(), result)  # type: ignore[arg-type]
    except ProbeFailure as exc:
        return False, exc.reason
    return result.ok, None


_header = st.sampled_from(["CSeq: 1", "CSeq: 2", "CSeq: 3", "Content-Type: application/sdp", "Content-Length: 5",
                           "Content-Length: 40", "Content-Length: -1", "Content-Length: 99999999",
                           'WWW-Authenticate: Digest realm="r", nonce="n"', "WWW-Authenticate: Basic",
                           'WWW-Authenticate: Digest nonce="n", qop="auth", algorithm=SHA-256',
                           'WWW-Authenticate: Digest nonce="n", algorithm=SHA-512', "X: \x00\xff", " folded"])
_response = st.builds(
    lambda status, headers, body: (f"RTSP/1.0 {status} R\r\n" + "".join(h + "\r\n" for h in headers)
                                   + "\r\n").encode("latin-1") + body,
    st.sampled_from([200, 200, 401, 404, 999]), st.lists(_header, max_size=6),
    st.one_of(st.just(SDP), st.binary(max_size=60)))


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), st.lists(_response, min_size=1, max_size=4).map(b"".join)),
       password=st.sampled_from([None, PASSWORD]))
def test_fuzz_response_handling(data, password):
    ok, reason = asyncio.run(_session_on(data, password))
    assert ok or reason in REASONS


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=3))
def test_fuzz_challenge_parsing(values):
    challenges = parse_challenges(values)
    auth, why = answer(challenges, USER, PASSWORD)
    if auth is not None:
        header = auth.header("DESCRIBE", "rtsp://127.0.0.1/stream1")
        assert "\r" not in header and "\n" not in header and PASSWORD not in header
    assert PASSWORD not in why and PASSWORD not in repr(auth)


def test_challenge_parsing_examples():
    [basic, digest] = parse_challenges(['Basic realm="a, b", Digest realm="x\\"y", nonce=n1, qop="auth,auth-int"'])
    assert (basic.scheme, basic.params) == ("basic", {"realm": "a, b"})
    assert (digest.scheme, digest.params) == ("digest", {"realm": 'x"y', "nonce": "n1", "qop": "auth,auth-int"})


# --- configuration -------------------------------------------------------------------------------

HEAD = "tiers:\n  P0: {interval: 5s, timeout: 1s, packets: 1}\ntargets:\n"


def _load(tmp_path, body: str):
    path = tmp_path / "lifeline.yaml"
    path.write_text(HEAD + body)
    return str(path), lambda: load(str(path), KINDS)


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("LIFELINE_TEST_RTSP_PASSWORD", PASSWORD)
    monkeypatch.delenv("LIFELINE_TEST_RTSP_UNSET", raising=False)


def test_a_good_block(tmp_path, password_env):
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n")
    path, do = _load(tmp_path, (
        "  - {name: a, address: 127.0.0.1, tier: P0, probes: [rtsp],\n"
        "     rtsp: {url: 'rtsp://cam.example:8554/live?ch=1', username: admin,\n"
        "            password_env: LIFELINE_TEST_RTSP_PASSWORD, valid_status_codes: [200, 404], timeout: 500ms}}\n"
        "  - {name: b, address: '::1', tier: P0, probes: [rtsp],\n"
        "     rtsp: {url: 'rtsp://[::1]/x', username: admin, password_file: pw.txt}}\n"))
    a, b = (t.setting("rtsp") for t in do().targets)
    assert (a.url, a.port, a.username, a.password.value, a.valid_status_codes, a.timing.timeout) == \
        ("rtsp://cam.example:8554/live?ch=1", 8554, "admin", PASSWORD, (200, 404), 0.5)
    assert (b.port, b.password.value) == (554, PASSWORD)
    assert PASSWORD not in repr(a) + str(a) + repr(b)


BAD = [
    pytest.param("rtsp: {url: 'http://cam/stream1'}",
                 ["FILE:8: targets[0].rtsp.url: must be an rtsp:// URL (got 'http://')"], id="not-rtsp"),
    pytest.param("rtsp: {url: 'rtsp://127.0.0.1:70000/s'}",
                 ["FILE:8: targets[0].rtsp.url: must be between 1 and 65535 (got 70000)"], id="port-out-of-range"),
    pytest.param("rtsp: {url: 'rtsp://127.0.0.1:0/s'}",
                 ["FILE:8: targets[0].rtsp.url: must be between 1 and 65535 (got 0)"], id="port-zero"),
    pytest.param("rtsp: {url: 'rtsp://127.0.0.1:5x4/s'}",
                 ["FILE:8: targets[0].rtsp.url: port must be a number (got '5x4')"], id="port-not-a-number"),
    pytest.param("rtsp: {url: 'rtsp://admin:Cam-pass-7Hq2x@127.0.0.1/s'}",
                 ["FILE:8: targets[0].rtsp.url: must not carry credentials; use username and password_env "
                  "or password_file"], id="credentials-in-url"),
    pytest.param("rtsp: {url: 'rtsp://cam/a b'}",
                 ["FILE:8: targets[0].rtsp.url: must not contain spaces, control or non-ASCII characters "
                  "(percent-encode them)"], id="space-in-url"),
    pytest.param("rtsp: {url: 'rtsp:///stream1'}",
                 ["FILE:8: targets[0].rtsp.url: has no host (expected rtsp://HOST[:PORT]/PATH)"], id="no-host"),
    pytest.param("rtsp: {url: 'rtsp://c/s', username: admin, password_env: LIFELINE_TEST_RTSP_UNSET}",
                 ["FILE:8: targets[0].rtsp.password_env: environment variable 'LIFELINE_TEST_RTSP_UNSET' "
                  "is not set"], id="unset-password-env"),
    pytest.param("rtsp: {url: 'rtsp://c/s', username: admin, password_file: missing.txt}",
                 ["FILE:8: targets[0].rtsp.password_file: cannot read 'DIR/missing.txt': No such file or directory"],
                 id="missing-password-file"),
    pytest.param("rtsp: {url: 'rtsp://c/s', user: admin}",
                 ["FILE:8: targets[0].rtsp.user: unknown key (did you mean 'username'?)"], id="unknown-key"),
    pytest.param("rtsp: {url: 'rtsp://c/s', password: Cam-pass-7Hq2x}",
                 ["FILE:8: targets[0].rtsp.password: unknown key (did you mean 'password_env'?)"],
                 id="inline-password"),
    pytest.param("rtsp: {url: 'rtsp://c/s', password_env: LIFELINE_TEST_RTSP_PASSWORD}",
                 ["FILE:8: targets[0].rtsp.password_env: a password needs a username"], id="password-no-user"),
    pytest.param("rtsp: {url: 'rtsp://c/s', username: admin}",
                 ["FILE:8: targets[0].rtsp.username: a username needs password_env or password_file"],
                 id="user-no-password"),
    pytest.param("rtsp: {url: 'rtsp://c/s', username: admin, password_env: LIFELINE_TEST_RTSP_PASSWORD,\n"
                 "            password_file: pw.txt}",
                 ["FILE:9: targets[0].rtsp.password_file: set only one of password_env, password_file"],
                 id="two-password-sources"),
    pytest.param("rtsp: {url: 'rtsp://c/s', valid_status_codes: [200, 700]}",
                 ["FILE:8: targets[0].rtsp.valid_status_codes[1]: must be between 100 and 599 (got 700)"],
                 id="status-out-of-range"),
    pytest.param("rtsp: {url: 'rtsp://c/s', valid_status_codes: []}",
                 ["FILE:8: targets[0].rtsp.valid_status_codes: must list at least one status code"],
                 id="no-status-codes"),
    pytest.param("rtsp: {url: 'rtsp://c/s', timeout: 5s}",
                 ["FILE:8: targets[0].rtsp.timeout: timeout (5s) must be below interval (5s)"],
                 id="timeout-not-below-interval"),
    pytest.param("rtsp: {username: admin, password_env: LIFELINE_TEST_RTSP_PASSWORD}",
                 ["FILE:8: targets[0].rtsp: missing required key 'url'"], id="no-url"),
]


@pytest.mark.parametrize("block,expected", BAD)
def test_bad_blocks_give_exact_messages(tmp_path, password_env, block, expected):
    path, do = _load(tmp_path, f"  - name: cam\n    address: 127.0.0.1\n    tier: P0\n    probes: [rtsp]\n"
                               f"    {block}\n")
    with pytest.raises(ConfigInvalid) as exc:
        do()
    got = [str(e).replace(path, "FILE").replace(str(tmp_path) + "/", "DIR/") for e in exc.value.errors]
    assert got == expected
    assert PASSWORD not in "\n".join(got)


def test_a_listed_probe_without_its_block(tmp_path):
    path, do = _load(tmp_path, "  - {name: cam, address: 127.0.0.1, tier: P0, probes: [rtsp]}\n")
    with pytest.raises(ConfigInvalid) as exc:
        do()
    assert [str(e).replace(path, "FILE") for e in exc.value.errors] == [
        "FILE:4: targets[0].rtsp: 'rtsp' is listed in probes but the target has no 'rtsp' settings "
        "(url is required)"]


def test_lifeline_check_never_prints_the_password(tmp_path, password_env, capsys):
    path, _ = _load(tmp_path, (
        "  - {name: a, address: 127.0.0.1, tier: P0, probes: [rtsp],\n"
        f"     rtsp: {{url: 'rtsp://admin:{PASSWORD}@c/s', username: admin, bogus: 1,\n"
        "            password_env: LIFELINE_TEST_RTSP_PASSWORD}}\n"))
    assert cli_main(["check", path]) != 0
    out = capsys.readouterr()
    assert "rtsp.url" in out.out + out.err and PASSWORD not in out.out + out.err


# --- the agent --------------------------------------------------------------------------------------

def test_agent_exports_rtsp_results(gst, agent_factory):
    promtool = require_tool("promtool", "prometheus")
    down = free_port()  # nothing listens there
    config = f"""
tiers:
  P0: {{interval: 2s, timeout: 1500ms, packets: 1}}
targets:
  - {{name: cam-open, address: 127.0.0.1, tier: P0, probes: [rtsp], rtsp: {{url: "{_url(gst['open'])}"}}}}
  - {{name: cam-digest, address: 127.0.0.1, tier: P0, probes: [rtsp],
     rtsp: {{url: "{_url(gst['digest'])}", username: {USER}, password_env: LIFELINE_TEST_RTSP_PASSWORD}}}}
  - {{name: cam-noauth, address: 127.0.0.1, tier: P0, probes: [rtsp], rtsp: {{url: "{_url(gst['basic'])}"}}}}
  - {{name: cam-404, address: 127.0.0.1, tier: P0, probes: [rtsp], rtsp: {{url: "{_url(gst['open'], 'nope')}"}}}}
  - {{name: cam-down, address: 127.0.0.1, tier: P0, probes: [rtsp], rtsp: {{url: "{_url(down)}"}}}}
"""
    agent = agent_factory(config, env={"LIFELINE_TEST_RTSP_PASSWORD": PASSWORD},
                          extra_args=["--log.level", "debug"])

    def all_probed():
        m = samples(agent.metrics())
        return m if all(value(m, "lifeline_rtsp_status_code", target=t) is not None
                        for t in ("cam-open", "cam-digest", "cam-noauth", "cam-404", "cam-down")) else None
    m = wait_for(all_probed, 20, "every rtsp target probed")
    expect = {"cam-open": (200, 1, None), "cam-digest": (200, 1, None), "cam-noauth": (401, 0, "auth"),
              "cam-404": (404, 0, "status"), "cam-down": (0, 0, "refused")}
    for name, (status, success, reason) in expect.items():
        assert value(m, "lifeline_rtsp_status_code", target=name, tier="P0") == status, name
        assert value(m, "lifeline_probe_success", target=name, probe="rtsp") == success, name
        assert value(m, "lifeline_target_up", target=name) == success, name
        if reason:
            assert value(m, "lifeline_probe_failures_total", target=name, probe="rtsp", reason=reason) >= 1, name
    for phase in ("total", "resolve", "connect", "options", "describe"):
        assert value(m, "lifeline_probe_duration_seconds", target="cam-open", probe="rtsp", phase=phase) >= 0, phase
    assert value(m, "lifeline_probe_duration_seconds", target="cam-down", probe="rtsp", phase="describe") is None

    text = agent.metrics()
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert PASSWORD not in text + agent.log()
