"""depends_on, sites and anchors in the config: the graph they make, and sharding with them.

Bad cases (unknown names, cycles, self-dependency, duplicate anchors) are in
tests/configs/bad/{depends_unknown,depends_cycle,anchors_bad}.yaml with their exact messages.
"""

from __future__ import annotations

from pathlib import Path

from agent import config as config_mod
from agent.shard import Shard, shard_of

ISSUE_EXAMPLE = """
anchors: [site-gateway, resolver-1, remote-anchor-a]
sites:
  shenjiamen: {depends_on: [agg-router-7]}
  putuo: {depends_on: [putuo-pe-1, putuo-pe-2]}
consensus: {quorum: 2}
targets:
  - {name: site-gateway, address: 127.0.0.1, tier: P0}
  - {name: resolver-1, address: 127.0.0.2, tier: P0}
  - {name: remote-anchor-a, address: 127.0.0.3, tier: P0}
  - {name: agg-router-7, address: 127.0.0.4, tier: P1, site: shenjiamen}
  - {name: camera-0001, address: 127.0.0.5, tier: P3, site: shenjiamen}
  - {name: putuo-pe-1, address: 127.0.0.6, tier: P1, site: putuo}
  - {name: putuo-pe-2, address: 127.0.0.7, tier: P1, site: putuo}
  - {name: fever-clinic-b, address: 127.0.0.8, tier: P0, site: putuo, depends_on: [putuo-olt-3]}
  - {name: putuo-olt-3, address: 127.0.0.9, tier: P1, site: putuo}
"""


def _load(tmp_path: Path, text: str) -> config_mod.Config:
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    return config_mod.load(str(path))


def test_own_depends_on_adds_to_the_site_default(tmp_path):
    cfg = _load(tmp_path, ISSUE_EXAMPLE)
    graph = cfg.graph()
    assert graph.anchors == ("site-gateway", "resolver-1", "remote-anchor-a")
    assert graph.parents["camera-0001"] == ("agg-router-7",)
    assert graph.parents["fever-clinic-b"] == ("putuo-olt-3", "putuo-pe-1", "putuo-pe-2")
    # The site's own PEs do not take the default that names them (no PE-1 <-> PE-2 cycle);
    # the router the default names lives in its site and depends on nothing.
    assert "putuo-pe-1" not in graph.parents and "agg-router-7" not in graph.parents
    assert graph.parents["putuo-olt-3"] == ("putuo-pe-1", "putuo-pe-2")
    assert set(graph.children["putuo-pe-1"]) == {"fever-clinic-b", "putuo-olt-3"}
    assert cfg.consensus.quorum == 2


def test_a_shard_also_probes_the_anchors_and_parents_of_its_targets(tmp_path):
    cfg = _load(tmp_path, ISSUE_EXAMPLE)
    count = 3
    owner = shard_of("fever-clinic-b", count)
    kept = {t.name for t in Shard(owner, count).select(cfg).targets}
    assert {"fever-clinic-b", "putuo-olt-3", "putuo-pe-1", "putuo-pe-2",
            "site-gateway", "resolver-1", "remote-anchor-a"} <= kept
    for index in range(count):  # every shard keeps the anchors, and its own targets' parents
        shard = Shard(index, count)
        names = {t.name for t in shard.select(cfg).targets}
        graph = shard.select(cfg).graph()
        assert set(graph.anchors) == {"site-gateway", "resolver-1", "remote-anchor-a"}
        for name in names:
            assert set(cfg.graph().parents.get(name, ())) <= names


def test_names_from_fetched_lists_are_warnings_not_errors(tmp_path):
    cfg = _load(tmp_path, """
targets_http: [{url: "http://127.0.0.1:9/targets.json", default_tier: P3}]
sites: {shenjiamen: {depends_on: [agg-router-7]}}
targets:
  - {name: cam, address: 127.0.0.1, tier: P3, site: shenjiamen, depends_on: [fetched-olt]}
""")
    merged = config_mod.Config(**{**cfg.__dict__, "sd_lists": (("http://127.0.0.1:9/targets.json", b"[]"),)})
    messages = [str(w) for w in config_mod.warnings(merged)]
    assert any("warning: unknown target 'agg-router-7'; ignored" in m for m in messages)
    assert any("warning: unknown target 'fetched-olt'; ignored" in m for m in messages)
    assert cfg.graph().parents == {}


def test_check_summarises_parents_and_anchors(tmp_path, capsys):
    from agent.cli import main

    path = tmp_path / "lifeline.yaml"
    path.write_text(ISSUE_EXAMPLE)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == (f"{path}: OK (9 targets; P0: 4, P1: 4, P3: 1; "
                                       "3 with parents, 3 anchors)\n")


def test_reload_with_a_cycle_keeps_the_running_graph_and_vantage_labels(agent_factory, needs_root, tmp_path):
    from tests.helpers import http_post, value, wait_for

    good = """
anchors: [gw]
targets:
  - {name: gw, address: 127.0.0.1, tier: P0}
  - {name: router, address: 127.0.0.2, tier: P0}
  - {name: cam, address: 127.0.0.3, tier: P0, depends_on: [router]}
"""
    agent = agent_factory(good, extra_args=["--vantage", "putuo"])
    def probed():
        text = agent.metrics()
        anchor, cam = value(text, "lifeline_anchor_up", anchor="gw"), value(text, "lifeline_target_up", target="cam")
        return text if anchor == 1 and cam is not None else None

    text = wait_for(probed, 15, "first cycles")
    assert value(text, "lifeline_target_up", target="cam", vantage="putuo") == 1
    assert value(text, "lifeline_agent_isolated") == 0
    (tmp_path / "lifeline.yaml").write_text(good.replace("tier: P0}\n  - {name: cam",
                                                         "tier: P0, depends_on: [cam]}\n  - {name: cam"))
    status, body = http_post(agent.url + "/-/reload")
    assert status != 200 and "dependency cycle: " in body.decode(), body
    text = agent.metrics()
    assert value(text, "lifeline_config_last_reload_successful") == 0
    assert value(text, "lifeline_anchor_up", anchor="gw") == 1 and value(text, "lifeline_agent_isolated") == 0
    assert agent.proc.poll() is None
