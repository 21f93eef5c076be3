"""Test hosts with faults on demand: the demo network plus ICMP errors, output drops and link down.

Every address is in 198.18.0.0/15 inside a namespace the test creates and
removes (see ``agent/demo/netns.py``). Needs root.
"""

from __future__ import annotations

import subprocess

from agent.demo.netns import DemoNet, NetnsError, available, run

__all__ = ["TestNet", "NetnsError", "available"]


class TestNet(DemoNet):
    __test__ = False  # not a pytest test class

    def set_reject(self, addr: str) -> None:
        """Answer echo requests to ``addr`` with ICMP host-unreachable, as a router with no route would."""
        self._set(addr, "reject")

    @staticmethod
    def _rule(addr: str, setting: int | str) -> str | None:
        if setting == "reject":
            return f"ip daddr {addr} icmp type echo-request reject with icmp type host-unreachable"
        return DemoNet._rule(addr, setting)

    def block_output(self, addr: str, blocked: bool = True) -> None:
        """Make the host's own sendto() to ``addr`` fail (EPERM), via an output drop in its own table."""
        if addr not in self.hosts:
            raise ValueError(f"{addr} is not a host of {self.name}")
        if blocked:
            run("nft", "-f", "-", stdin=f"table ip {self._out_table} {{\n  chain output {{\n"
                                        f"    type filter hook output priority 0; policy accept;\n"
                                        f"    ip daddr {addr} drop\n  }}\n}}\n")
        else:
            subprocess.run(["nft", "delete", "table", "ip", self._out_table], capture_output=True, check=False)

    @property
    def _out_table(self) -> str:
        return "lifeline_out_" + self.prefix.replace(".", "_").rstrip("_")

    def set_link(self, up: bool) -> None:
        run("ip", "link", "set", self.veth + "a", "up" if up else "down")

    def destroy(self) -> None:
        subprocess.run(["nft", "delete", "table", "ip", self._out_table], capture_output=True, check=False)
        super().destroy()
