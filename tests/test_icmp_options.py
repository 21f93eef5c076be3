"""ICMP options (source, size, don't-fragment, DSCP, TTL): config, the engine's sockets, and real routed paths.

The routed path is ``tests/icmp_router.py``: this host -> router namespace -> host
namespace, where a TTL of 1 expires at the router, an MTU can be lowered on either
link and nftables counts what reaches the host.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from agent import config as config_mod
from agent.config import DEFAULT_TIERS
from common.errors import ConfigInvalid
from probes.icmp.engine import IcmpEngine
from probes.icmp.options import IcmpOptions
from probes.icmp.probe import IcmpProbe
from tests.helpers import ROOT, ping_namespace, value, wait_for
from tests.icmp_router import RouterNet
from tests.kit import retier, target

TIER = retier(DEFAULT_TIERS["P0"], packets=2, packet_interval=0.01, timeout=0.5)


def _write(tmp_path, text):
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    return str(path)


def _errors(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(path)
    return [str(e).replace(path, "FILE") for e in exc.value.errors]


# --- configuration -----------------------------------------------------------------------

def test_target_block_overrides_the_tier_defaults_key_by_key(tmp_path):
    config = config_mod.load(_write(tmp_path, """
tiers:
  P0: {icmp: {dscp: 46, ttl: 32}}
targets:
  - {name: voice, address: 198.51.100.7, tier: P0}
  - {name: mtu, address: 198.51.100.8, tier: P0, icmp: {ttl: 5, size: 1472, dont_fragment: true}}
  - {name: plain, address: 198.51.100.9, tier: P1}
  - {name: from-b, address: "2001:db8::1", tier: P1, probes: [icmp], icmp: {source: "2001:db8::2"}}
"""))
    got = {t.name: t.setting("icmp") for t in config.targets}
    assert got["voice"] == IcmpOptions(dscp=46, ttl=32)
    assert got["mtu"] == IcmpOptions(size=1472, dont_fragment=True, dscp=46, ttl=5)
    # Neither block nor tier: no options at all, so the target stays on the shared socket.
    assert got["plain"] is None and config.targets[2].settings == ()
    assert got["from-b"] == IcmpOptions(source="2001:db8::2")
    assert config.tiers["P0"].parts["icmp"].options == IcmpOptions(dscp=46, ttl=32)
    assert config.tiers["P1"].parts["icmp"].options is None


def test_each_bad_value_is_reported_with_its_line(tmp_path):
    messages = _errors(tmp_path, """
tiers:
  P1: {icmp: {ttl: 300}}
targets:
  - name: a
    address: 198.51.100.7
    tier: P0
    icmp:
      size: 70000
      dscp: 64
      ttl: 0
      dont_fragment: "yes"
      source: gateway.example
      tos: 184
  - {name: b, address: "2001:db8::1", tier: P0, icmp: {source: 198.51.100.1}}
  - {name: c, address: 198.51.100.7, tier: P0, icmp: [ttl]}
""")
    assert messages == [
        "FILE:3: tiers.P1.icmp.ttl: must be between 1 and 255 (got 300)",
        "FILE:9: targets[0].icmp.size: must be between 0 and 65507 (got 70000)",
        "FILE:10: targets[0].icmp.dscp: must be between 0 and 63 (got 64)",
        "FILE:11: targets[0].icmp.ttl: must be between 1 and 255 (got 0)",
        "FILE:12: targets[0].icmp.dont_fragment: must be true or false (got 'yes')",
        "FILE:13: targets[0].icmp.source: must be an IPv4 or IPv6 address literal (got 'gateway.example')",
        "FILE:14: targets[0].icmp.tos: unknown key; allowed: dont_fragment, dscp, size, source, ttl",
        "FILE:15: targets[1].icmp.source: source 198.51.100.1 is IPv4 but address 2001:db8::1 is IPv6",
        "FILE:16: targets[2].icmp: must be a mapping (got a list)",
    ]


def test_source_family_is_checked_for_literal_addresses_only(tmp_path):
    # A name's family is known only once resolved: the engine checks it per cycle (see below).
    config = config_mod.load(_write(tmp_path, """
targets:
  - {name: a, address: gw.example, tier: P0, icmp: {source: 198.51.100.1}}
"""))
    assert config.targets[0].setting("icmp") == IcmpOptions(source="198.51.100.1")
    messages = _errors(tmp_path, """
tiers:
  P0: {icmp: {source: 198.51.100.1}}
targets:
  - {name: v4, address: 198.51.100.7, tier: P0}
  - {name: v6, address: "2001:db8::1", tier: P0}
  - {name: v6-own, address: "2001:db8::1", tier: P0, icmp: {source: "2001:db8::2"}}
""")
    assert messages == ["FILE:6: targets[1].address: source 198.51.100.1 is IPv4 but address 2001:db8::1 is IPv6 "
                        "(the source comes from tier P0's icmp defaults; set icmp.source on this target)"]


# --- the engine on loopback ----------------------------------------------------------------

def _probe(*targets, mode="raw"):
    """Run one cycle for each target with a fresh probe; returns the results."""
    async def main():
        probe = IcmpProbe(engine=IcmpEngine(mode=mode))
        try:
            return await asyncio.gather(*(probe.run(t, TIER) for t in targets)), probe.engine
        finally:
            await probe.close()
    return asyncio.run(main())


def _with(address, name="t", **options):
    return target(name, address=address, settings=(("icmp", IcmpOptions(**options)),) if options else ())


@pytest.mark.usefixtures("needs_root")
def test_targets_without_options_stay_on_the_shared_socket():
    async def main():
        engine = IcmpEngine(mode="raw")
        opts = IcmpOptions(ttl=64, dscp=46)
        plain, voice, voice2, other = await asyncio.gather(
            engine.ping("127.0.0.1", socket.AF_INET, 3, 0.01, 1.0),
            engine.ping("127.0.0.2", socket.AF_INET, 3, 0.01, 1.0, opts),
            engine.ping("127.0.0.3", socket.AF_INET, 3, 0.01, 1.0, IcmpOptions(ttl=64, dscp=46)),
            engine.ping("127.0.0.4", socket.AF_INET, 2, 0.01, 1.0, IcmpOptions(size=1000)))
        shared = engine._families[socket.AF_INET]
        sockets = {key[1]: fam for key, fam in engine._options.items()}
        out = (plain, voice, voice2, other, shared.seq, {o: f.seq for o, f in sockets.items()},
               len(engine.raw_idents), dict(engine.ignored))
        await engine.close()
        return out
    plain, voice, voice2, other, shared_seq, option_seqs, idents, ignored = asyncio.run(main())
    assert [s.received for s in (plain, voice, voice2, other)] == [3, 3, 3, 2]
    assert shared_seq == 3  # only the plain target's echoes went through the shared socket
    # Equal option sets share a socket: one per distinct set.
    assert option_seqs == {IcmpOptions(ttl=64, dscp=46): 6, IcmpOptions(size=1000): 2}
    assert idents == 3 and not any(ignored.values())  # each socket's kernel filter kept the others' replies out


@pytest.mark.usefixtures("needs_root")
@pytest.mark.parametrize("size", [0, 4, 1472, 9000, 65507])
def test_payload_sizes_are_answered(size):
    (result,), engine = _probe(_with("127.0.0.1", size=size))
    assert result.ok and result.received == 2
    assert not any(engine.ignored.values())


@pytest.mark.usefixtures("needs_root")
def test_a_source_that_is_not_local_fails_the_target_with_a_reason():
    # Binding fails, so nothing is sent; the target is on loopback anyway.
    (bad, good), _ = _probe(_with("127.0.0.1", "bad", source="198.18.255.254"),
                            _with("127.0.0.1", "good", source="127.0.0.2"))
    assert not bad.ok and bad.reason == "send_error" and bad.sent == 0
    assert bad.detail == ("cannot send from source 198.18.255.254: cannot assign requested address "
                          "(not an address of this host?)")
    assert good.ok and good.received == 2


@pytest.mark.usefixtures("needs_root")
def test_a_name_that_resolves_to_the_other_family_fails_with_a_reason():
    async def main():
        engine = IcmpEngine(mode="raw")
        stats = await engine.ping("::1", socket.AF_INET6, 2, 0.01, 1.0, IcmpOptions(source="127.0.0.1"))
        await engine.close()
        return stats
    stats = asyncio.run(main())
    assert stats.errors == ["send_error"] and stats.sent == 0
    assert stats.detail == "source 127.0.0.1 and address ::1 are of different IP versions"


IPV6_WIRE_SCRIPT = """
import asyncio, json, socket, sys
from probes.icmp.engine import IcmpEngine
from probes.icmp.options import IcmpOptions
async def main():
    engine = IcmpEngine(mode=sys.argv[1])
    opts = IcmpOptions(dscp=46, ttl=7, size=1200, dont_fragment=True)
    v4 = await engine.ping("127.0.0.1", socket.AF_INET, 3, 0.01, 1.0, opts)
    v6 = await engine.ping("::1", socket.AF_INET6, 3, 0.01, 1.0, opts)
    plain = await engine.ping("::1", socket.AF_INET6, 2, 0.01, 1.0)
    print(json.dumps({"modes": engine.socket_modes(), "received": [v4.received, v6.received, plain.received]}))
    await engine.close()
asyncio.run(main())
"""


@pytest.mark.usefixtures("needs_root")
@pytest.mark.parametrize("mode", ["raw", "dgram"])
def test_dscp_and_ttl_are_on_the_wire_for_both_families(mode):
    """Counted by nftables on loopback in a namespace of its own (where datagram sockets are allowed)."""
    with ping_namespace(f"llopt{mode[0]}") as nsexec:
        subprocess.run([*nsexec, "nft", "-f", "-"], text=True, check=True, input=(
            "table inet t {\n counter v4 { }\n counter v6 { }\n chain input {\n"
            "  type filter hook input priority 0;\n"
            '  icmp type echo-request ip dscp 46 ip ttl 7 counter name "v4"\n'
            '  icmpv6 type echo-request ip6 dscp 46 ip6 hoplimit 7 counter name "v6"\n }\n}\n'))
        proc = subprocess.run([*nsexec, sys.executable, "-c", IPV6_WIRE_SCRIPT, mode], capture_output=True,
                              text=True, cwd=ROOT, timeout=30)
        assert proc.returncode == 0, proc.stderr
        listing = json.loads(subprocess.run([*nsexec, "nft", "-j", "list", "counters"], capture_output=True,
                                            text=True, check=True).stdout)
    out = json.loads(proc.stdout)
    counts = {i["counter"]["name"]: i["counter"]["packets"] for i in listing["nftables"] if "counter" in i}
    assert out == {"modes": {"ipv4": mode, "ipv6": mode}, "received": [3, 3, 2]}
    assert counts == {"v4": 3, "v6": 3}  # the plain echoes carried neither


# --- a routed path: ttl_exceeded, DSCP, source, MTU ----------------------------------------

@pytest.fixture(scope="module")
def path(needs_root):
    net = RouterNet("t")
    net.create()
    try:
        yield net
    finally:
        net.destroy()


def test_ttl_one_expires_at_the_router(path):
    (expired, enough, default), _ = _probe(_with(path.host, "ttl1", ttl=1), _with(path.host, "ttl2", ttl=2),
                                           _with(path.host, "plain"))
    assert not expired.ok and expired.reason == "ttl_exceeded" and expired.sent == 2
    assert expired.detail == f"time exceeded from {path.router}"
    assert expired.duration < 0.4  # the errors settle the cycle; no waiting for the timeout
    assert enough.ok and enough.received == 2
    assert default.ok and default.received == 2


def test_dscp_reaches_the_host(path):
    before = path.counter("dscp46"), path.counter("requests")
    (marked, plain), _ = _probe(_with(path.host, "ef", dscp=46), _with(path.host, "plain"))
    assert marked.ok and plain.ok
    assert (path.counter("dscp46") - before[0], path.counter("requests") - before[1]) == (2, 4)


def test_source_address_is_the_one_asked_for(path):
    before = path.counter("from_second")
    (second, first), _ = _probe(_with(path.host, "second", source=path.client2), _with(path.host, "first"))
    assert second.ok and second.received == 2 and first.ok
    assert path.counter("from_second") - before == 2


def test_dont_fragment_over_a_smaller_local_mtu(path):
    path.set_client_mtu(1280)
    try:
        results, _ = _probe(_with(path.host, "df", size=1472, dont_fragment=True),
                            _with(path.host, "df-fits", size=1252, dont_fragment=True),
                            _with(path.host, "fragmented", size=1472, dont_fragment=False),
                            _with(path.host, "kernel-default", size=1472))
    finally:
        path.set_client_mtu(1500)
    df, fits, fragmented, default = results
    assert not df.ok and df.reason == "frag_needed"
    assert df.detail == f"send to {path.host}: message too long: the 1500-byte packet exceeds the path MTU"
    assert fits.ok and fragmented.ok and default.ok  # 1252 + 28 = 1280 fits; the others are fragmented


def test_dont_fragment_over_a_smaller_mtu_behind_the_router(path):
    path.set_router_mtu(1280)
    try:
        # host2: its own path-MTU memory, untouched by the other tests
        (df,), _ = _probe(_with(path.host2, "df", size=1472, dont_fragment=True))
        (again, fragmented), _ = _probe(_with(path.host2, "df", size=1472, dont_fragment=True),
                                        _with(path.host2, "fragmented", size=1472, dont_fragment=False))
    finally:
        path.set_router_mtu(1500)
    assert not df.ok and df.reason == "frag_needed"
    assert df.detail == f"fragmentation needed (next-hop MTU 1280) from {path.router}"
    # The kernel has learnt the path MTU: the next cycle fails at once, locally, with the same reason.
    assert not again.ok and again.reason == "frag_needed" and "message too long" in again.detail
    assert fragmented.ok


DGRAM_SCRIPT = """
import asyncio, json, socket, sys
from probes.icmp.engine import IcmpEngine
from probes.icmp.options import IcmpOptions
async def main(steps):
    engine = IcmpEngine(mode="dgram")
    out = {}
    for name, ip, opts in steps:
        stats = await engine.ping(ip, socket.AF_INET, 2, 0.01, 1.0, IcmpOptions(**opts) if opts else None)
        out[name] = [stats.received, sorted(set(stats.errors)), stats.detail]
    out["modes"] = engine.socket_modes()
    out["ignored"] = engine.ignored
    await engine.close()
    print(json.dumps(out))
asyncio.run(main(json.loads(sys.argv[1])))
"""


def test_unprivileged_datagram_sockets_carry_every_option(needs_root):
    """Run in a client namespace with ping_group_range open; the root namespace's setting is never touched."""
    def run_steps(net, steps):
        proc = subprocess.run([*net.client_exec(), sys.executable, "-c", DGRAM_SCRIPT, json.dumps(steps)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    with RouterNet("d", client_ns=True) as net:
        net.set_client_mtu(1280)
        out = run_steps(net, [("plain", net.host, None), ("ttl1", net.host, {"ttl": 1}),
                              ("ef", net.host, {"dscp": 46}), ("second", net.host, {"source": net.client2}),
                              ("df", net.host, {"size": 1472, "dont_fragment": True}),
                              ("absent", net.host, {"source": "198.18.255.254"})])
        counted = net.counter("dscp46"), net.counter("from_second")
        net.set_client_mtu(1500)
        net.set_router_mtu(1280)
        behind = run_steps(net, [("df", net.host2, {"size": 1472, "dont_fragment": True})])
    assert out["modes"] == {"ipv4": "dgram"}
    assert out["plain"] == [2, [], ""]
    assert out["ttl1"] == [0, ["ttl_exceeded"], f"time exceeded from {net.router}"]
    assert out["ef"][0] == 2 and out["second"][0] == 2 and counted == (2, 2)
    assert out["df"] == [0, ["frag_needed"], f"send to {net.host}: message too long: the 1500-byte packet "
                                             "exceeds the path MTU"]
    assert out["absent"][:2] == [0, ["send_error"]] and "cannot send from source" in out["absent"][2]
    assert not any(out["ignored"].values())
    assert behind["df"][:2] == [0, ["frag_needed"]]
    assert behind["df"][2] == f"fragmentation needed (next-hop MTU 1280) from {net.router}"


# --- the agent -----------------------------------------------------------------------------

def test_agent_exports_ttl_exceeded_and_runs_marked_echoes(path, agent_factory):
    dscp_before = path.counter("dscp46")
    agent = agent_factory(f"""
tiers:
  P0: {{interval: 500ms, timeout: 300ms, packets: 2, packet_interval: 10ms}}
targets:
  - {{name: beyond-ttl, address: {path.host}, tier: P0, icmp: {{ttl: 1}}}}
  - {{name: voice, address: {path.host}, tier: P0, icmp: {{dscp: 46, ttl: 64}}}}
  - {{name: plain, address: 127.0.0.1, tier: P0}}
""")

    def scraped():
        m = agent.metrics()
        expired = value(m, "lifeline_probe_failures_total", target="beyond-ttl", probe="icmp", reason="ttl_exceeded")
        # Each target's first cycle lands at its own phase: wait for all three, not two.
        done = expired and value(m, "lifeline_probe_success", target="voice", probe="icmp") == 1 \
            and value(m, "lifeline_probe_success", target="plain", probe="icmp") is not None
        return m if done else None

    m = wait_for(scraped, 15, "ttl_exceeded for beyond-ttl, a successful voice target, a plain result")
    assert value(m, "lifeline_target_up", target="beyond-ttl") == 0
    assert value(m, "lifeline_probe_success", target="plain", probe="icmp") == 1
    assert value(m, "lifeline_probe_failures_total", target="voice", probe="icmp", reason="ttl_exceeded") is None
    assert path.counter("dscp46") > dscp_before
