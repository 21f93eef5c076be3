"""The demo network: hosts in a network namespace, healthy, lossy or dark.

One namespace joined to the host by a veth pair; every host address lives in
198.18.0.0/15 (RFC 2544 benchmarking range), so nothing here can reach a real
network. Packet loss is made with nftables inside the namespace (``numgen
random`` drops); a "dark" host drops every echo request. Needs root.

The tests build their fault-injection harness (ICMP errors, output drops,
link down) on this class in ``tests/testnet.py``; only what the demo needs
ships in the package.
"""

from __future__ import annotations

import os
import subprocess


class NetnsError(RuntimeError):
    pass


def run(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")


def available() -> str | None:
    """None if test namespaces can be made here, else what is missing."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, nftables)"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"{tool} not found: apt-get install -y {pkg}"
    return None


class DemoNet:
    """A namespace ``name`` holding hosts 198.18.<octet>.2.. behind gateway 198.18.<octet>.1 (or 198.19 for octet>255)."""

    def __init__(self, name: str, octet: int, veth: str) -> None:
        if not 0 <= octet <= 511:
            raise ValueError("octet must be 0..511")
        self.name = name
        self.prefix = f"198.{18 + octet // 256}.{octet % 256}."
        self.veth = veth[:13]  # interface names are at most 15 characters
        self.gateway = self.prefix + "1"
        self._loss: dict[str, int | str] = {}
        self.hosts: list[str] = []

    def create(self, host_count: int) -> list[str]:
        self.destroy()  # a previous run that was killed may have left it behind
        outer, inner = self.veth + "a", self.veth + "b"
        run("ip", "netns", "add", self.name)
        try:
            run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", self.name)
            run("ip", "addr", "add", f"{self.gateway}/24", "dev", outer)
            run("ip", "link", "set", outer, "up")
            ns = ("ip", "-n", self.name)
            run(*ns, "link", "set", "lo", "up")
            run(*ns, "link", "set", inner, "up")
            self.hosts = [f"{self.prefix}{i}" for i in range(2, 2 + host_count)]
            for addr in self.hosts:
                run(*ns, "addr", "add", f"{addr}/24", "dev", inner)
            run(*ns, "route", "add", "default", "via", self.gateway)
            # If the veth goes down (link-fault tests), its connected route vanishes and traffic
            # to these test addresses would follow the default route off the machine. This
            # fallback route keeps it local: it fails with "unreachable" instead.
            run("ip", "route", "add", "unreachable", f"{self.prefix}0/24", "metric", "4000")
            self._apply()
        except Exception:
            self.destroy()
            raise
        return self.hosts

    def set_loss(self, addr: str, percent: int) -> None:
        """Drop ``percent`` % of echo requests to ``addr`` at random (100 = dark, 0 = healthy)."""
        self._set(addr, max(0, min(100, percent)))

    def _set(self, addr: str, rule: int | str) -> None:
        if addr not in self.hosts:
            raise ValueError(f"{addr} is not a host of {self.name}")
        self._loss[addr] = rule
        self._apply()

    @staticmethod
    def _rule(addr: str, setting: int | str) -> str | None:
        """The nftables input rule for one host's setting (a loss percentage), or None."""
        if isinstance(setting, int) and setting >= 100:
            return f"ip daddr {addr} icmp type echo-request drop"
        if isinstance(setting, int) and setting > 0:
            return f"ip daddr {addr} icmp type echo-request numgen random mod 100 < {setting} drop"
        return None

    def _apply(self) -> None:
        rules = [r for addr, setting in sorted(self._loss.items()) if (r := self._rule(addr, setting))]
        script = "\n".join([
            "table inet lifeline_testnet",
            "delete table inet lifeline_testnet",
            "table inet lifeline_testnet {",
            "  chain input {",
            "    type filter hook input priority 0; policy accept;",
            *(f"    {r}" for r in rules),
            "  }",
            "}",
        ]) + "\n"
        run("ip", "netns", "exec", self.name, "nft", "-f", "-", stdin=script)

    def destroy(self) -> None:
        subprocess.run(["ip", "route", "del", "unreachable", f"{self.prefix}0/24", "metric", "4000"],
                       capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.veth + "a"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __enter__(self) -> DemoNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
