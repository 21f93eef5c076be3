"""Namespaces for the paging scenarios: probe sites (vantages) with a management link
and an uplink, a target network behind the uplinks, and a child network behind a router.

    root ns (Prometheus, Alertmanager)
      | management veth, 198.19.<b+1>.<4i+1>/30 <-> <4i+2>/30 (the agent listens there)
    vantage i ns (the agent)
      | uplink veth, 198.19.<b+2>.<4i+1>/30 <-> <4i+2>/30
    target ns: hosts 198.19.<b>.2.. on its loopback; it is also the router (198.19.<b>.1)
      | veth 198.19.<b+4>.1/30 <-> .2/30, forwarding on
    child ns: hosts 198.19.<b+3>.2.. on its loopback

Faults are nftables rules, regenerated whole on every change: a cut uplink (everything
arriving from that vantage dropped at the far end, as a fibre cut looks: timeouts), a
path from one vantage to one host, a dark host, a dark router (it neither answers nor
forwards). Addresses stay in 198.19.0-43.0/24 (the other test networks use 198.18.*,
198.19.44-243 and 198.19.255); every namespace is removed by ``destroy``.
"""

from __future__ import annotations

import subprocess

from agent.demo.netns import run


class PageNet:
    def __init__(self, tag: str, base: int, vantages: int, hosts: int, children: int = 0) -> None:
        if not 0 <= base <= 39:
            raise ValueError("base must be 0..39")
        self.tag = tag[:6]
        self.base = base
        self.target_ns = f"llpt-{self.tag}"
        self.child_ns = f"llpc-{self.tag}"
        self.vantage_ns = [f"llpv{i}-{self.tag}" for i in range(vantages)]
        self.router = f"198.19.{base}.1"
        self.hosts = [f"198.19.{base}.{i}" for i in range(2, 2 + hosts)]
        self.children = [f"198.19.{base + 3}.{i}" for i in range(2, 2 + children)]
        self.mgmt = [f"198.19.{base + 1}.{4 * i + 2}" for i in range(vantages)]  # where each agent listens
        self._cut: set[int] = set()
        self._blocked: set[tuple[int, str]] = set()
        self._dark: set[str] = set()
        self._router_dark = False

    def _veth(self, kind: str, i: int) -> tuple[str, str]:
        name = f"lp{kind}{i}{self.tag}"[:13]
        return name + "a", name + "b"

    def create(self) -> None:
        self.destroy()
        try:
            self._create()
        except Exception:
            self.destroy()
            raise

    def _create(self) -> None:
        b, t = self.base, self.target_ns
        run("ip", "netns", "add", t)
        run("ip", "-n", t, "link", "set", "lo", "up")
        run("ip", "-n", t, "addr", "add", f"{self.router}/32", "dev", "lo")
        for host in self.hosts:
            run("ip", "-n", t, "addr", "add", f"{host}/32", "dev", "lo")
        for i, ns in enumerate(self.vantage_ns):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            outer, inner = self._veth("m", i)
            run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
            run("ip", "addr", "add", f"198.19.{b + 1}.{4 * i + 1}/30", "dev", outer)
            run("ip", "link", "set", outer, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.mgmt[i]}/30", "dev", inner)
            run("ip", "-n", ns, "link", "set", inner, "up")
            up_v, up_t = self._veth("u", i)
            run("ip", "-n", ns, "link", "add", up_v, "type", "veth", "peer", "name", up_t, "netns", t)
            run("ip", "-n", ns, "addr", "add", f"198.19.{b + 2}.{4 * i + 1}/30", "dev", up_v)
            run("ip", "-n", ns, "link", "set", up_v, "up")
            run("ip", "-n", t, "addr", "add", f"198.19.{b + 2}.{4 * i + 2}/30", "dev", up_t)
            run("ip", "-n", t, "link", "set", up_t, "up")
            gateway = f"198.19.{b + 2}.{4 * i + 2}"
            for net in (f"198.19.{b}.0/24", f"198.19.{b + 3}.0/24"):
                run("ip", "-n", ns, "route", "add", net, "via", gateway)
        if self.children:
            c = self.child_ns
            run("ip", "netns", "add", c)
            run("ip", "-n", c, "link", "set", "lo", "up")
            for host in self.children:
                run("ip", "-n", c, "addr", "add", f"{host}/32", "dev", "lo")
            r_side, c_side = self._veth("c", 0)
            run("ip", "-n", t, "link", "add", r_side, "type", "veth", "peer", "name", c_side, "netns", c)
            run("ip", "-n", t, "addr", "add", f"198.19.{b + 4}.1/30", "dev", r_side)
            run("ip", "-n", t, "link", "set", r_side, "up")
            run("ip", "-n", c, "addr", "add", f"198.19.{b + 4}.2/30", "dev", c_side)
            run("ip", "-n", c, "link", "set", c_side, "up")
            run("ip", "-n", t, "route", "add", f"198.19.{b + 3}.0/24", "via", f"198.19.{b + 4}.2")
            run("ip", "-n", c, "route", "add", "default", "via", f"198.19.{b + 4}.1")
            run("ip", "netns", "exec", t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self._apply()

    # ------------------------------------------------------------------ faults

    def cut_uplink(self, vantage: int, cut: bool = True) -> None:
        (self._cut.add if cut else self._cut.discard)(vantage)
        self._apply()

    def block_path(self, vantage: int, host: str, blocked: bool = True) -> None:
        (self._blocked.add if blocked else self._blocked.discard)((vantage, host))
        self._apply()

    def set_dark(self, host: str, dark: bool = True) -> None:
        (self._dark.add if dark else self._dark.discard)(host)
        self._apply()

    def set_router_dark(self, dark: bool = True) -> None:
        self._router_dark = dark
        self._apply()

    def _apply(self) -> None:
        uplink = {i: self._veth("u", i)[1] for i in range(len(self.vantage_ns))}
        rules = [f'iifname "{uplink[i]}" drop' for i in sorted(self._cut)]
        rules += [f'iifname "{uplink[i]}" ip daddr {h} drop' for i, h in sorted(self._blocked)]
        rules += [f"ip daddr {h} drop" for h in sorted(self._dark)]
        if self._router_dark:  # neither answers nor forwards: everything from the vantages stops here
            rules += [f'iifname "{name}" drop' for name in uplink.values()]
        self._nft(self.target_ns, rules)

    @staticmethod
    def _nft(ns: str, rules: list[str]) -> None:
        script = "\n".join([
            "table inet lifeline_pagenet", "delete table inet lifeline_pagenet",
            "table inet lifeline_pagenet {", "  chain pre {",
            "    type filter hook prerouting priority -10; policy accept;",
            *(f"    {r}" for r in rules), "  }", "}"]) + "\n"
        run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=script)

    def destroy(self) -> None:
        for i in range(len(self.vantage_ns)):
            subprocess.run(["ip", "link", "del", self._veth("m", i)[0]], capture_output=True, check=False)
        for ns in (*self.vantage_ns, self.target_ns, self.child_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
