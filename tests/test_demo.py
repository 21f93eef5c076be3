"""`lifeline demo` (what `make demo` runs): several tiers, healthy, lossy and dark targets, services up and down."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT, free_port, http_get, require_root, samples, value, wait_for


def test_demo_shows_every_state():
    require_root()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "demo", "--web.listen-address",
                             f"127.0.0.1:{port}", "--duration", "60"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def states():
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if status != 200:
                return None
            s = samples(body.decode())
            up = {dict(ls)["target"]: (dict(ls)["tier"], v) for (n, ls), v in s.items() if n == "lifeline_target_up"}
            loss = {dict(ls)["target"]: v for (n, ls), v in s.items() if n == "lifeline_icmp_loss_ratio"}
            # Every probe of every target has run once: 10 ICMP results plus the portal's http
            # and the two hotlines' sip (a target's probes finish at their own phases).
            ran = sum(1 for (n, _), _v in s.items() if n == "lifeline_probe_success")
            return (up, loss, s) if len(up) == 10 and len(loss) == 10 and ran == 13 else None

        up, loss, s = wait_for(states, 30, "all demo targets to report")
        assert {tier for tier, _ in up.values()} == {"P0", "P1", "P2", "P3"}
        assert up["putuo-hospital-fever-clinic"][1] == 1 and loss["putuo-hospital-fever-clinic"] == 0
        assert up["hotline-12345-platform"][1] == 0 and loss["hotline-12345-platform"] == 1
        assert up["checkpoint-camera-018"][1] == 0
        # Service probes against the demo's own loopback HTTP and SIP servers.
        assert up["gov-cloud-portal"][1] == 1
        assert value(s, "lifeline_http_status_code", target="gov-cloud-portal") == 200
        assert value(s, "lifeline_sip_status_code", target="hotline-12345-sbc") == 200
        # The IVR answers pings but its SIP server says 503: down, and the probe says which.
        assert up["hotline-12345-ivr"][1] == 0 and loss["hotline-12345-ivr"] == 0
        assert value(s, "lifeline_sip_status_code", target="hotline-12345-ivr") == 503
        assert value(s, "lifeline_probe_failures_total", target="hotline-12345-ivr", probe="sip", reason="status") >= 1
        # The lossy host loses some echoes but answers: 30% drop over 10 echoes.
        wait_for(lambda: 0 < (states() or ({}, {}, {}))[1].get("gov-cloud-uplink", 0) < 1, 30,
                 "gov-cloud-uplink to show partial loss")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/metrics" in out
    assert f"status:   http://127.0.0.1:{port}/" in out
    assert "lifeline-demo" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
