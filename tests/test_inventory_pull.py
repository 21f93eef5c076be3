"""Targets pulled from Prometheus service discovery: file_sd files and http_sd sources, with the real agent.

The http_sd server runs in the test on 127.0.0.1 and only ever hands out loopback (127.x) addresses.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import config as config_mod
from agent.inventory import pull
from common.errors import ConfigInvalid
from tests.helpers import http_get, http_post, series, value, wait_for

pytestmark = pytest.mark.usefixtures("needs_root")

FAST = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 1}
  P1: {interval: 1s, timeout: 300ms, packets: 1}
  P2: {interval: 1s, timeout: 300ms, packets: 1}
"""


class SdServer:
    """An http_sd endpoint on loopback whose answer the test sets: a body, a status, or nothing at all."""

    def __init__(self, port: int = 0) -> None:
        self.status, self.body, self.ctype, self.delay = 200, b"[]", "application/json", 0.0
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.auth.append(self.headers.get("Authorization"))
                time.sleep(server.delay)
                self.send_response(server.status)
                self.send_header("Content-Type", server.ctype)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/sd"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, groups, status: int = 200) -> None:
        self.status = status
        self.body = groups if isinstance(groups, bytes) else json.dumps(groups).encode()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sd_server():
    servers: list[SdServer] = []

    def start(port: int = 0) -> SdServer:
        s = SdServer(port)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.thread.is_alive():
            s.stop()


def _groups(addresses, tier="P0", **labels):
    return [{"targets": list(addresses), "labels": {"tier": tier, "site": "putuo", "category": "hospital",
                                                    "__meta_sd_zone": "a", **labels}}]


def _names(text: str, name: str = "lifeline_probe_success") -> set[str]:
    out = set()
    for labels in series(text, name):
        for part in labels.split(","):
            if part.startswith('target="'):
                out.add(part[len('target="'):-1])
    return out


def _http_config(url: str, tmp_path, extra: str = "") -> str:
    return (FAST + f"sd_cache_dir: {tmp_path}/cache\n"
            f"targets_http:\n  - {{url: \"{url}\", refresh_interval: 1s{extra}}}\n"
            "targets:\n  - {name: anchor, address: 127.0.0.1, tier: P1}\n")


def _log_events(agent, event: str) -> list[dict]:
    out = []
    for line in agent.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == event:
            out.append(rec)
    return out


def test_http_sd_list_followed_through_failures_and_restart(agent_factory, sd_server, tmp_path):
    server = sd_server()
    good = _groups([f"127.0.5.{i}" for i in range(1, 9)], name="putuo")
    server.serve(good)
    agent = agent_factory(_http_config(server.url, tmp_path))
    want = {f"putuo-127.0.5.{i}" for i in range(1, 9)} | {"anchor"}
    wait_for(lambda: _names(agent.metrics()) >= want, 10, "the fetched targets probed")
    text = agent.metrics()
    assert value(text, "lifeline_sd_targets", source=server.url) == 8
    assert value(text, "lifeline_target_info", target="putuo-127.0.5.1") is not None
    assert 'sd_zone' not in text and value(text, "lifeline_target_up", target="putuo-127.0.5.1",
                                                 site="putuo", category="hospital") is not None

    # A change is picked up within one refresh interval (1 s) plus a probe interval.
    server.serve(_groups([f"127.0.5.{i}" for i in range(1, 10)], name="putuo"))
    wait_for(lambda: "putuo-127.0.5.9" in _names(agent.metrics()), 4, "the added target probed")
    good = _groups([f"127.0.5.{i}" for i in range(1, 10)], name="putuo")
    expected = want | {"putuo-127.0.5.9"}

    def failures(reason):
        return value(agent.metrics(), "lifeline_sd_fetch_failures_total", source=server.url, reason=reason) or 0

    def still_probing():
        before = {k: v for k, v in series(agent.metrics(), "lifeline_probe_last_run_timestamp_seconds").items()}
        time.sleep(1.5)
        after = series(agent.metrics(), "lifeline_probe_last_run_timestamp_seconds")
        assert _names(agent.metrics(), "lifeline_probe_last_run_timestamp_seconds") == expected
        assert all(after[k] > before[k] for k in after), "a kept target stopped being probed"

    server.serve(b"oops", status=500)
    wait_for(lambda: failures("status") >= 1, 5, "HTTP 500 counted")
    still_probing()
    server.serve(b'[{"targets": ["127.0.5.1"', status=200)
    wait_for(lambda: failures("invalid") >= 1, 5, "invalid JSON counted")
    server.serve([{"targets": ["127.0.5.1"], "labels": {"tier": "P9"}}])
    wait_for(lambda: any("[0].labels.tier: unknown tier 'P9'" in e.get("detail", "")
                         for e in _log_events(agent, "sd_fetch_failed")), 5, "the bad tier named")
    still_probing()
    # Truncated: 2 of 9 P0 targets left; the P0 guard refuses it.
    server.serve(_groups(["127.0.5.1", "127.0.5.2"], name="putuo"))
    wait_for(lambda: failures("p0_guard") >= 1, 5, "the truncated list refused")
    assert _log_events(agent, "sd_list_refused")
    still_probing()
    server.stop()
    wait_for(lambda: failures("refused") >= 1, 5, "connection refused counted")
    still_probing()
    text = agent.metrics()
    assert value(text, "lifeline_sd_targets", source=server.url) == 9
    assert value(text, "lifeline_config_last_reload_successful") == 1  # the files are fine
    reasons = {e["reason"] for e in _log_events(agent, "sd_fetch_failed")}
    assert {"status", "invalid", "refused"} <= reasons
    applied = _log_events(agent, "sd_list_applied")
    assert applied and applied[-1]["added"] == 1 and applied[-1]["removed"] == 0

    # A restart with the inventory still down probes the cached list.
    config_path = agent.log_path.rsplit(".", 2)[0]
    agent.stop()
    again = agent_factory(open(config_path).read(), name="again.yaml")
    wait_for(lambda: _names(again.metrics()) >= expected, 10, "the cached list probed after a restart")
    assert _log_events(again, "sd_cache_loaded")
    assert value(again.metrics(), "lifeline_sd_targets", source=server.url) == 9


def test_http_sd_secrets_never_shown(agent_factory, sd_server, tmp_path):
    server = sd_server()
    server.serve(_groups(["127.0.6.1"], tier="P2", name="one"))
    (tmp_path / "token").write_text("s3cr3t-token-file\n")
    agent = agent_factory(_http_config(server.url, tmp_path, ", bearer_token_file: token"))
    wait_for(lambda: "one" in _names(agent.metrics()), 10, "the fetched target probed")
    assert server.auth[-1] == "Bearer s3cr3t-token-file"
    server.serve(b"x", status=401)
    wait_for(lambda: value(agent.metrics(), "lifeline_sd_fetch_failures_total", source=server.url,
                           reason="status"), 5, "401 counted")
    assert "s3cr3t" not in agent.log() and "s3cr3t" not in agent.metrics()

    os.environ["LL_TEST_SD_PASSWORD"] = "pa55-from-env"
    try:
        cfg = tmp_path / "basic.yaml"
        cfg.write_text(_http_config(server.url, tmp_path, ", basic_auth: {username: ops, "
                                                          "password_env: LL_TEST_SD_PASSWORD}"))
        server.serve(_groups(["127.0.6.2"], tier="P2", name="two"))
        basic = agent_factory(cfg.read_text(), name="basic.yaml", env={"LL_TEST_SD_PASSWORD": "pa55-from-env"})
        wait_for(lambda: "two" in _names(basic.metrics()), 10, "probed with basic auth")
        assert server.auth[-1] == "Basic b3BzOnBhNTUtZnJvbS1lbnY="
        assert "pa55" not in basic.log() and "pa55" not in basic.metrics()
        assert "pa55" not in http_get(basic.url + "/api/v1/status/config")[1].decode()
        assert "pa55" not in repr(config_mod.load(str(cfg)))
    finally:
        del os.environ["LL_TEST_SD_PASSWORD"]


def test_file_sd_picked_up_by_reload(agent_factory, tmp_path):
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "a.json").write_text(json.dumps(_groups(["127.0.7.1"], tier="P1", name="ward-1",
                                                  probes="icmp", circuit_id="ZS-9"), indent=2))
    agent = agent_factory(FAST + 'targets_sd_files: ["sd/*.json", "sd/*.yaml"]\n')
    wait_for(lambda: "ward-1" in _names(agent.metrics()), 10, "the file_sd target probed")
    assert value(agent.metrics(), "lifeline_target_info", target="ward-1", circuit_id="ZS-9") == 1
    (sd / "b.yaml").write_text("- targets: [127.0.7.2, 127.0.7.3]\n  labels: {tier: P2, site: dinghai}\n")
    agent.reload_signal()
    wait_for(lambda: {"dinghai-127.0.7.2", "dinghai-127.0.7.3"} <= _names(agent.metrics()), 10, "SIGHUP")
    (sd / "b.yaml").write_text("- targets: [127.0.7.2]\n  labels: {tier: P2, site: dinghai}\n")
    assert http_post(agent.url + "/-/reload")[0] == 200
    wait_for(lambda: "dinghai-127.0.7.3" not in _names(agent.metrics()), 5, "POST /-/reload")


@pytest.mark.parametrize("text, expected", [
    ('targets_sd_files: [sd/bad.json]\n', "sd/bad.json:7: [0].labels.tier: unknown tier 'P9'"),
    ('targets_sd_files: [sd/missing.json]\n', "lifeline.yaml:1: targets_sd_files[0]: file not found"),
    ('targets_http:\n  - {url: "ftp://127.0.0.1/sd"}\n', "lifeline.yaml:2: targets_http[0].url: an http://"),
    ('targets_http:\n  - {url: "http://u:p@127.0.0.1/sd"}\n', "lifeline.yaml:2: targets_http[0].url: an http://"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    refresh_interval: soon\n',
     "lifeline.yaml:3: targets_http[0].refresh_interval: must be a duration"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    default_tier: P9\n',
     "lifeline.yaml:3: targets_http[0].default_tier: unknown tier 'P9'"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    basic_auth: {username: a}\n',
     "lifeline.yaml:3: targets_http[0].basic_auth: needs exactly one of password_env, password_file"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    bearer_token_env: LL_NOT_SET_ANYWHERE\n',
     "lifeline.yaml:3: targets_http[0].bearer_token_env: environment variable 'LL_NOT_SET_ANYWHERE' is not set"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    tls: {ca_file: /nonexistent.pem}\n',
     "lifeline.yaml:3: targets_http[0].tls.ca_file: cannot read '/nonexistent.pem'"),
    ('targets_http:\n  - url: "http://127.0.0.1/sd"\n    refesh_interval: 1s\n',
     "lifeline.yaml:3: targets_http[0].refesh_interval: unknown key"),
], ids=["file-bad-tier", "file-missing", "url-scheme", "url-userinfo", "bad-duration", "default-tier",
        "basic-auth-no-password", "token-env-unset", "tls-ca", "typo"])
def test_bad_config_for_the_new_keys(tmp_path, text, expected):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "bad.json").write_text(json.dumps(
        [{"targets": ["127.0.0.9"], "labels": {"tier": "P9"}}], indent=2))
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(path))
    messages = [str(e) for e in exc.value.errors]
    assert any(m.startswith(f"{tmp_path}/{expected.split(':', 1)[0]}:") and expected.split(":", 1)[1] in m
               for m in messages), messages


def test_sd_group_mapping(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "- targets: [127.0.0.5]\n  labels: {name: 普陀医院, tier: P0, probes: 'icmp', rack: r1, __meta_x: y}\n"
        "- targets: [127.0.0.6, 127.0.0.7]\n  labels: {tier: P1, site: putuo}\n"
        "- targets: [127.0.0.8]\n  labels: {name: ward-8, tier: P1}\n"
        "- targets: [127.0.0.9]\n  labels: {site: x}\n")
    (tmp_path / "l.yaml").write_text("targets_sd_files: [a.yaml]\n")
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(tmp_path / "l.yaml"))
    assert [str(e).split(": ", 1)[1] for e in exc.value.errors] == [
        "[3].labels: no 'tier' label, and the source has no default_tier"]
    (tmp_path / "a.yaml").write_text("\n".join((tmp_path / "a.yaml").read_text().splitlines()[:6]) + "\n")
    cfg = config_mod.load(str(tmp_path / "l.yaml"))
    by_name = {t.name: t for t in cfg.targets}
    assert sorted(by_name) == ["127.0.0.5", "putuo-127.0.0.6", "putuo-127.0.0.7", "ward-8"]
    assert dict(by_name["127.0.0.5"].labels) == {"rack": "r1", "display_name": "普陀医院"}
    assert by_name["ward-8"].tier == "P1" and by_name["putuo-127.0.0.6"].site == "putuo"


def _measure(agent_factory, tmp_path, sd_server, count: int) -> tuple[float, float]:
    """Seconds from saving a file / serving a list until every new target's first result is in /metrics."""
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]
    sd = tmp_path / f"ttw{count}"
    sd.mkdir()
    server = sd_server()
    server.serve([])
    cfg = (FAST + f"sd_cache_dir: {tmp_path}/cache{count}\ntargets_sd_files: [ttw{count}/*.json]\n"
           f"targets_http:\n  - {{url: \"{server.url}\", refresh_interval: 1s}}\n"
           "targets:\n  - {name: anchor, address: 127.0.0.1, tier: P1}\n")
    agent = agent_factory(cfg, name=f"ttw{count}.yaml", extra_args=["--config.watch-interval", "1s"])
    wait_for(lambda: "anchor" in _names(agent.metrics()), 10, "the agent probing")
    time.sleep(1.2)  # the watcher has taken its first look

    start = time.monotonic()
    tmp = sd / "new.json.tmp"
    tmp.write_text(json.dumps([{"targets": addresses, "labels": {"tier": "P2", "site": "ttwf"}}]))
    os.replace(tmp, sd / "new.json")
    wait_for(lambda: _names(agent.metrics()) >= {f"ttwf-{a}" for a in addresses}, 60, "file targets probed",
             interval=0.1)
    file_seconds = time.monotonic() - start

    start = time.monotonic()
    server.serve([{"targets": [a.replace("127.1.", "127.2.") for a in addresses],
                   "labels": {"tier": "P2", "site": "ttwh"}}])
    wait_for(lambda: _names(agent.metrics()) >= {f"ttwh-{a.replace('127.1.', '127.2.')}" for a in addresses},
             60, "http targets probed", interval=0.1)
    http_seconds = time.monotonic() - start
    agent.stop()
    return file_seconds, http_seconds


def test_time_to_watch(agent_factory, tmp_path, sd_server, capsys):
    figures = {n: _measure(agent_factory, tmp_path, sd_server, n) for n in (1, 900)}
    with capsys.disabled():
        for n, (f, h) in figures.items():
            print(f"\ntime to watch, {n} target(s): file_sd {f:.2f} s (watch-interval 1s), "
                  f"http_sd {h:.2f} s (refresh_interval 1s)")
    for f, h in figures.values():
        assert f < 10 and h < 10


@pytest.mark.parametrize("setup, reason", [
    (lambda s: s.serve(b"[" + b" " * 5000 + b"]"), "too_large"),
    (lambda s: setattr(s, "ctype", "text/html"), "invalid"),
    (lambda s: setattr(s, "delay", 1.0), "timeout"),
    (lambda s: s.serve(b"", status=503), "status"),
], ids=["body-over-limit", "not-json-content-type", "timeout", "http-503"])
def test_fetch_failure_reasons(sd_server, setup, reason):
    server = sd_server()
    setup(server)
    source = config_mod.HttpSdSource(url=server.url, refresh_interval=1.0, timeout=0.3, max_body_bytes=4096)
    with pytest.raises(pull.FetchError) as exc:
        pull.fetch(source)
    assert exc.value.reason == reason


def test_diff_of_the_file_against_the_agent_leaves_fetched_targets_out(agent_factory, sd_server, tmp_path, capsys):
    from agent.cli import main

    server = sd_server()
    server.serve(_groups([f"127.0.5.{i}" for i in range(1, 4)], name="putuo"))
    agent = agent_factory(_http_config(server.url, tmp_path))
    wait_for(lambda: "putuo-127.0.5.3" in _names(agent.metrics()), 10, "the fetched targets probed")
    config_path = agent.log_path.rsplit(".", 2)[0]
    assert main(["diff", config_path, agent.url]) == 0
    captured = capsys.readouterr()
    # The file and the agent agree on the file's targets; the 3 fetched ones are not "removed".
    assert "3 targets" in captured.err and "targets_http are not compared" in captured.err
    total = next(line.split()[1:] for line in captured.out.splitlines() if line.startswith("total"))
    assert total == ["1", "1", "0", "0", "0", "1"], captured.out  # before, after, added, removed, changed, same
