"""Runs the agent on a built-in demo network: healthy, lossy and dark circuits, and services up and down."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from importlib.resources import files

import yaml

from agent import config as config_mod
from agent.demo.netns import DemoNet, NetnsError, available
from agent.demo.servers import DemoServers

NETNS = "lifeline-demo"
OCTET = 511  # 198.19.255.0/24
LOSS = {"198.19.255.3": 30, "198.19.255.4": 100, "198.19.255.5": 100}


def _demo_config(with_netns: bool, servers: DemoServers) -> str:
    text = files("agent.demo").joinpath("demo.yaml").read_text()
    text = text.replace("HTTP_PORT", str(servers.http_port)).replace("SIP_PORT", str(servers.sip_port))
    data = yaml.safe_load(text)
    if not with_netns:
        data["targets"] = [t for t in data["targets"] if not t["address"].startswith("198.19.")]
    return yaml.safe_dump(data, sort_keys=False)


def run_demo(listen: str, duration: float = 0.0) -> int:
    from agent.app import Agent

    problem = available()
    net = None
    if problem is None:
        net = DemoNet(NETNS, OCTET, "lldemo")
        try:
            net.create(host_count=4)
            for addr, pct in LOSS.items():
                net.set_loss(addr, pct)
        except NetnsError as exc:
            print(f"demo: cannot build the test namespace ({exc}); loopback targets only", file=sys.stderr)
            net.destroy()
            net = None
    else:
        print(f"demo: test namespace skipped ({problem}); loopback targets only, no lossy or dark host",
              file=sys.stderr)
    workdir = tempfile.mkdtemp(prefix="lifeline-demo-")
    path = os.path.join(workdir, "demo.yaml")

    async def main() -> int:
        servers = await DemoServers().start()  # the HTTP and SIP services the service probes check
        try:
            with open(path, "w") as fh:
                fh.write(_demo_config(net is not None, servers))
            cfg = config_mod.load(path)
            agent = Agent(path, cfg, listen)
            print(f"\nLifeline demo: {len(cfg.targets)} targets in tiers "
                  f"{', '.join(sorted({t.tier for t in cfg.targets}))}.\n"
                  f"  status:   http://{listen}/  (the status page)\n"
                  f"  metrics:  http://{listen}/metrics\n  config:   {path}\n"
                  + ("  lossy:    gov-cloud-uplink (30% drop)\n  dark:     hotline-12345-platform, "
                     "checkpoint-camera-018\n" if net else "")
                  + "  services: gov-cloud-portal (http), hotline-12345-sbc (sip) up; "
                    "hotline-12345-ivr answers pings but SIP says 503\n"
                  + "Try: curl -s http://" + listen + "/metrics | grep lifeline_target_up\n"
                  "Stop with Ctrl-C.\n", flush=True)
            if duration > 0:
                asyncio.get_running_loop().call_later(duration, agent.stop)
            return await agent.run()
        finally:
            servers.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    finally:
        if net is not None:
            net.destroy()
