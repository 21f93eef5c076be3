"""A routed test path for ICMP options: client -> veth -> router namespace -> veth -> host namespace.

The client end is the root namespace (where the tests and the agent run) or, for
unprivileged datagram sockets, a namespace of its own (``ping_group_range`` is
per namespace, so the host's setting is never touched). Addresses are
198.19.<200+2k>.0/24 (client-router) and 198.19.<201+2k>.0/24 (router-host),
k = pid % 25, apart from ``tests/testnet.py`` (198.18.x) and the demo
(198.19.255). In the root namespace both get an ``unreachable`` fallback route,
so test traffic cannot leave the machine if a link goes down. The host
namespace counts echo requests with nftables: all, DSCP 46, from the client's
second address. Needs root.
"""

from __future__ import annotations

import json
import os
import subprocess

from agent.demo.netns import run

COUNTERS = ("requests", "dscp46", "from_second")


class RouterNet:
    """One client-router-host path; ``create()`` builds it, ``destroy()`` removes it (also half-built)."""

    def __init__(self, tag: str, client_ns: bool = False, pid: int | None = None) -> None:
        pid = os.getpid() if pid is None else pid  # names and addresses: another process may name the same net
        k = pid % 25
        self.a, self.b = f"198.19.{200 + 2 * k}.", f"198.19.{201 + 2 * k}."
        self.client_ns = f"lloc{tag}-{pid}" if client_ns else None
        self.router_ns, self.host_ns = f"llor{tag}-{pid}", f"lloh{tag}-{pid}"
        base = f"llo{tag}{pid % 100000}"[:12]  # interface names are at most 15 characters
        self.client_if, self.router_in, self.router_out, self.host_if = base + "a", base + "b", base + "c", base + "d"
        self.client, self.client2 = self.a + "1", self.a + "3"  # the client's two addresses
        self.router, self.router_b = self.a + "2", self.b + "1"
        self.host, self.host2 = self.b + "2", self.b + "3"

    def _client(self, *args: str) -> None:
        run(*(("ip", "-n", self.client_ns) if self.client_ns else ("ip",)), *args)

    def client_exec(self) -> list[str]:
        """Prefix that runs a command at the client end."""
        return ["ip", "netns", "exec", self.client_ns] if self.client_ns else []

    def create(self) -> RouterNet:
        self.destroy()  # a killed earlier run may have left it behind
        try:
            for ns in (self.client_ns, self.router_ns, self.host_ns):
                if ns:
                    run("ip", "netns", "add", ns)
                    run("ip", "-n", ns, "link", "set", "lo", "up")
            r, h = ("ip", "-n", self.router_ns), ("ip", "-n", self.host_ns)
            self._client("link", "add", self.client_if, "type", "veth", "peer", "name", self.router_in,
                         "netns", self.router_ns)
            run(*r, "link", "add", self.router_out, "type", "veth", "peer", "name", self.host_if,
                "netns", self.host_ns)
            self._client("addr", "add", f"{self.client}/24", "dev", self.client_if)
            self._client("addr", "add", f"{self.client2}/24", "dev", self.client_if)
            self._client("link", "set", self.client_if, "up")
            run(*r, "addr", "add", f"{self.router}/24", "dev", self.router_in)
            run(*r, "addr", "add", f"{self.router_b}/24", "dev", self.router_out)
            run(*r, "link", "set", self.router_in, "up")
            run(*r, "link", "set", self.router_out, "up")
            run(*h, "addr", "add", f"{self.host}/24", "dev", self.host_if)
            run(*h, "addr", "add", f"{self.host2}/24", "dev", self.host_if)
            run(*h, "link", "set", self.host_if, "up")
            run(*h, "route", "add", "default", "via", self.router_b)
            self._client("route", "add", f"{self.b}0/24", "via", self.router)
            for net in (self.a, self.b):  # if a link goes down, fail here instead of following the default route
                self._client("route", "add", "unreachable", f"{net}0/24", "metric", "4000")
            nsx = ("ip", "netns", "exec")
            # Forwarding, and no ICMP rate limit: tests send bursts of echoes that all expire.
            run(*nsx, self.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0")
            if self.client_ns:
                run(*nsx, self.client_ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
            counters = "".join(f"  counter {c} {{ }}\n" for c in COUNTERS)
            run(*nsx, self.host_ns, "nft", "-f", "-", stdin=(
                f"table inet lltest {{\n{counters}  chain input {{\n"
                "    type filter hook input priority 0; policy accept;\n"
                '    icmp type echo-request counter name "requests"\n'
                '    icmp type echo-request ip dscp 46 counter name "dscp46"\n'
                f'    icmp type echo-request ip saddr {self.client2} counter name "from_second"\n'
                "  }\n}\n"))
        except BaseException:
            self.destroy()
            raise
        return self

    def counter(self, name: str) -> int:
        """Echo requests the host has seen that match counter ``name`` (see COUNTERS)."""
        out = subprocess.run(["ip", "netns", "exec", self.host_ns, "nft", "-j", "list", "counter", "inet",
                              "lltest", name], capture_output=True, text=True, check=True).stdout
        return next(item["counter"]["packets"] for item in json.loads(out)["nftables"] if "counter" in item)

    def set_client_mtu(self, mtu: int) -> None:
        """MTU of the client-router link (both ends, as on a real link: a veth drops frames above its own)."""
        self._client("link", "set", self.client_if, "mtu", str(mtu))
        run("ip", "-n", self.router_ns, "link", "set", self.router_in, "mtu", str(mtu))

    def set_router_mtu(self, mtu: int) -> None:
        """MTU of the router-host link: big DF echoes then get "fragmentation needed" from the router."""
        run("ip", "-n", self.router_ns, "link", "set", self.router_out, "mtu", str(mtu))
        run("ip", "-n", self.host_ns, "link", "set", self.host_if, "mtu", str(mtu))

    def destroy(self) -> None:
        if not self.client_ns:
            for net in (self.a, self.b):
                subprocess.run(["ip", "route", "del", "unreachable", f"{net}0/24", "metric", "4000"],
                               capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", self.client_if], capture_output=True, check=False)
        for ns in (self.client_ns, self.router_ns, self.host_ns):
            if ns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def __enter__(self) -> RouterNet:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()
