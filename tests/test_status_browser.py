"""The status page left running in a real headless chromium while a host goes dark.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-terminated JSON): no port to open, nobody else
on the machine can attach, and no websocket client or new dependency is needed.
The test checks what a NOC wall screen depends on: the page updates itself
(the same document, no reload), asks nothing of anyone but the agent, and logs
no error. The screenshot is kept as test-artifacts/status-page-live.png.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import ROOT, require_root, wait_for

ARTIFACTS = os.path.join(ROOT, "test-artifacts")
INTERVAL, TIMEOUT = 1.0, 0.3
# Seen on the page within: the first failed cycle (an interval plus the timeout), the
# snapshot cache (built at most every 2 s) and the page's 5 s refresh, plus 1 s of slack.
DEADLINE = INTERVAL + TIMEOUT + 2.0 + 5.0 + 1.0

CONFIG = f"""\
tiers:
  P0: {{interval: {INTERVAL:g}s, timeout: {TIMEOUT * 1000:.0f}ms, packets: 2, packet_interval: 50ms}}
targets:
  - {{name: dinghai-hospital-icu, address: {{host}}, tier: P0, category: hospital, site: dinghai,
     labels: {{circuit_id: ZS-MSTP-0042, carrier: telecom, contact: "+86-580-000042"}}}}
  - {{name: lincheng-command-centre, address: 127.0.0.1, tier: P0, category: command, site: lincheng}}
"""


class DevTools:
    """A headless chromium and one page in it, over ``--remote-debugging-pipe``."""

    def __init__(self, profile: str) -> None:
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            raise AssertionError("chromium not found: apt-get install -y chromium (or run `make test`)")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds_3_and_4() -> None:  # chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self._log = open(os.path.join(profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-default-apps", "about:blank"],
            # close_fds would close 3 and 4 after preexec_fn; our other descriptors are close-on-exec.
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=fds_3_and_4,
            close_fds=False)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, name="devtools", daemon=True)
        self._reader.start()
        self.session = ""

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        waiter = self._replies.pop(msg["id"], None)
                    if waiter is not None:
                        waiter.put(msg)
                else:
                    self.events.append(msg)

    def send(self, method: str, session: bool = True, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """One command; its result, or AssertionError with chromium's error."""
        with self._lock:
            self._next_id += 1
            ident, waiter = self._next_id, queue.Queue()
            self._replies[ident] = waiter
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        try:
            reply = waiter.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no DevTools reply to {method} in {timeout}s") from None
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open_page(self, width: int, height: int) -> None:
        target = self.send("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", session=False, targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def page_events(self, *methods: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("sessionId") == self.session and e["method"] in methods]

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        self._reader.join(5)
        os.close(self._from_child)
        self._log.close()


@pytest.fixture
def browser() -> Iterator[DevTools]:
    profile = tempfile.mkdtemp(prefix="lifeline-chromium-")
    tools = DevTools(profile)
    try:
        yield tools
    finally:
        tools.close()
        shutil.rmtree(profile, ignore_errors=True)


def _down_rows(browser: DevTools) -> list[str]:
    """The targets named in the page's down-and-degraded table, as rendered."""
    return browser.evaluate(
        "[...document.querySelectorAll('#problems tbody tr')].filter(r => r.querySelector('.s-down'))"
        ".map(r => r.querySelector('strong').textContent)")


def test_a_host_going_dark_shows_on_the_open_page_without_a_reload(agent_factory, testnet, browser):
    require_root()
    host = testnet.hosts[5]
    testnet.set_loss(host, 0)
    try:
        agent = agent_factory(CONFIG.replace("{host}", host))
        browser.open_page(1600, 1000)
        browser.send("Page.navigate", url=agent.url + "/")
        wait_for(lambda: browser.evaluate("document.readyState") == "complete", 20, "the page to load")
        # Both hosts answer before the host goes dark: the table says every target answers.
        wait_for(lambda: "Every target answers" in browser.evaluate("document.querySelector('#problems').innerText")
                 and browser.evaluate("document.querySelector('#tiers').innerText").find("2 up") >= 0,
                 20, "the page to show both targets up")
        browser.evaluate("window.__marker = 1")
        navigations = len(browser.page_events("Page.frameNavigated", "Page.loadEventFired"))

        testnet.set_loss(host, 100)
        dark_at = time.monotonic()
        wait_for(lambda: "dinghai-hospital-icu" in _down_rows(browser), DEADLINE + 5,
                 "the dark host in the page's down list", interval=0.1)
        shown_after = time.monotonic() - dark_at
        print(f"\nthe dark host showed as DOWN on the open page {shown_after:.1f}s after its echoes were dropped")
        assert shown_after <= DEADLINE, f"{shown_after:.1f}s, expected at most {DEADLINE:.1f}s"

        # The same document updated itself: no navigation, the marker survived.
        assert browser.evaluate("window.__marker") == 1
        assert len(browser.page_events("Page.frameNavigated", "Page.loadEventFired")) == navigations
        assert _down_rows(browser) == ["dinghai-hospital-icu"]  # the loopback host stays up
        row = browser.evaluate("[...document.querySelectorAll('#problems tbody tr')][0].innerText")
        assert "icmp: timeout" in row and "ZS-MSTP-0042" in row, row

        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
        with open(os.path.join(ARTIFACTS, "status-page-live.png"), "wb") as fh:
            fh.write(shot)
        assert len(shot) > 10_000, "the screenshot looks empty"

        urls = [e["params"]["request"]["url"] for e in browser.page_events("Network.requestWillBeSent")]
        assert any(u.startswith(agent.url + "/status.json") for u in urls), urls  # it did refresh over HTTP
        outside = [u for u in urls if not u.startswith(agent.url + "/")]
        assert outside == [], f"requests outside the agent: {outside}"
        errors = [e["params"] for e in browser.page_events("Runtime.consoleAPICalled")
                  if e["params"]["type"] in ("error", "assert")]
        errors += [e["params"]["entry"] for e in browser.page_events("Log.entryAdded")
                   if e["params"]["entry"]["level"] == "error"]
        errors += [e["params"] for e in browser.page_events("Runtime.exceptionThrown")]
        assert errors == [], f"console errors: {errors}"
    finally:
        testnet.set_loss(host, 0)
