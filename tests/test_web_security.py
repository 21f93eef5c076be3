"""TLS and basic auth on every endpoint, with a real HTTPS client; web config errors; no secret leaks."""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
import sys

import bcrypt
import pytest

from agent import webconfig
from common.errors import ConfigInvalid
from tests.helpers import ROOT, require_root, require_tool

PASSWORD = "s3cret-hospital-pass"
CONFIG = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
targets:
  - {name: lo, address: 127.0.0.1, tier: P0}
"""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    openssl = require_tool("openssl", "openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return d


@pytest.fixture(scope="module")
def secured(tls_files, tmp_path_factory):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = tls_files / "web.yaml"
    web.write_text(f"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                   f"http_server_config:\n  headers: {{X-Frame-Options: deny}}\n"
                   f"basic_auth_users:\n  prometheus: {hashed}\n")
    return web, hashed


def _https(port, cafile, method, path, user=None, password=None):
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body


ENDPOINTS = [("GET", "/metrics"), ("GET", "/"), ("GET", "/status.json"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
             ("POST", "/-/reload"), ("GET", "/-/reload")]


def test_https_with_basic_auth_on_every_endpoint(agent_factory, secured, tls_files):
    require_root()
    web, hashed = secured
    cafile = tls_files / "cert.pem"
    agent = agent_factory(CONFIG, extra_args=["--web.config.file", str(web)],
                          ready_check=lambda a: _https(a.port, cafile, "GET", "/-/ready", "prometheus",
                                                       PASSWORD)[0] == 200)
    for method, path in ENDPOINTS:
        status, headers, _ = _https(agent.port, cafile, method, path)
        assert status == 401, (method, path)
        assert headers["WWW-Authenticate"] == 'Basic realm="lifeline"'
        assert _https(agent.port, cafile, method, path, "prometheus", "wrong")[0] == 401, (method, path)
        assert _https(agent.port, cafile, method, path, "nobody", PASSWORD)[0] == 401, (method, path)
    for method, path in ENDPOINTS:
        status, headers, body = _https(agent.port, cafile, method, path, "prometheus", PASSWORD)
        assert status == (405 if (method, path) == ("GET", "/-/reload") else 200), (method, path, body)
        assert headers["X-Frame-Options"] == "deny"
    status, _, body = _https(agent.port, cafile, "GET", "/metrics", "prometheus", PASSWORD)
    assert b"lifeline_build_info" in body
    # Plain HTTP to the TLS port gets no answer.
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/metrics")
        conn.getresponse().read()
    log = agent.log()
    assert PASSWORD not in log and hashed not in log


def test_reload_rotates_the_password_and_keeps_old_on_bad_file(agent_factory, secured, tls_files, tmp_path):
    require_root()
    web, _ = secured
    mine = tmp_path / "web.yaml"
    mine.write_text(web.read_text().replace("cert.pem", str(tls_files / "cert.pem"))
                    .replace("key.pem", str(tls_files / "key.pem")))
    cafile = tls_files / "cert.pem"
    agent = agent_factory(CONFIG, extra_args=["--web.config.file", str(mine)],
                          ready_check=lambda a: _https(a.port, cafile, "GET", "/-/ready", "prometheus",
                                                       PASSWORD)[0] == 200)
    new_password = "rotated-" + PASSWORD
    hashed = bcrypt.hashpw(new_password.encode(), bcrypt.gensalt(rounds=10)).decode()
    mine.write_text(f"tls_server_config: {{cert_file: {cafile}, key_file: {tls_files / 'key.pem'}}}\n"
                    f"basic_auth_users:\n  prometheus: {hashed}\n")
    assert _https(agent.port, cafile, "POST", "/-/reload", "prometheus", PASSWORD)[0] == 200
    assert _https(agent.port, cafile, "GET", "/metrics", "prometheus", PASSWORD)[0] == 401
    assert _https(agent.port, cafile, "GET", "/metrics", "prometheus", new_password)[0] == 200
    mine.write_text("basic_auth_users: [broken]\n")
    status, _, body = _https(agent.port, cafile, "POST", "/-/reload", "prometheus", new_password)
    assert status == 500 and b"basic_auth_users: must be a mapping" in body
    assert _https(agent.port, cafile, "GET", "/metrics", "prometheus", new_password)[0] == 200


def _bad(tmp_path, text):
    path = tmp_path / "web.yaml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as exc:
        webconfig.load(str(path))
    return [str(e).replace(f"{path}:", "FILE:") for e in exc.value.errors]


def test_web_config_errors_point_at_lines_and_hide_values(tmp_path):
    errors = _bad(tmp_path, "basic_auth_users:\n  admin: plaintext-password\n"
                            "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n"
                            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
    assert errors == [
        "FILE:2: basic_auth_users.admin: must be a bcrypt hash ($2a$/$2b$/$2y$, 60 characters); "
        "create one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
        "FILE:4: tls_server_config.cert_file: cannot load certificate and key: No such file or directory",
        "FILE:6: tls_server_config.cipher_suites: not supported by lifeline; remove it (Python's TLS defaults apply)",
    ]
    assert not any("plaintext-password" in e for e in errors)
    errors = _bad(tmp_path, "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n")
    assert errors == ["FILE:2: tls_server_config.cert_file: cannot load certificate and key: No such file or directory"]
    assert _bad(tmp_path, "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}\n") == [
        "FILE:1: tls_server_config.client_auth_type: must be one of NoClientCert, VerifyClientCertIfGiven, "
        "RequireAndVerifyClientCert (got 'Sometimes')"]


def test_run_refuses_bad_web_config_without_traceback(tmp_path):
    cfg = tmp_path / "lifeline.yaml"
    cfg.write_text(CONFIG)
    web = tmp_path / "web.yaml"
    web.write_text("basic_auth_users: [admin]\n")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config.file", str(cfg),
                           "--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert f"{web}:1: basic_auth_users: must be a mapping of user name to bcrypt hash" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_repr_never_shows_hashes(secured, tls_files):
    web, hashed = secured
    cfg = webconfig.load(str(web))
    assert hashed not in repr(cfg) and "prometheus" in repr(cfg)
    assert cfg.authorized("Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode())
    assert not cfg.authorized("Basic !!notbase64")
    assert not cfg.authorized("Bearer x")
