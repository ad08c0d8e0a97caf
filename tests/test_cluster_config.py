"""cluster.yaml and ``callmeter worker join`` speak the planner's resource names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from actors.cluster import worker_join_command, worker_resources
from callmeter.models import SipAccount, parse_test
from callmeter.planner import REGION_RESOURCE, WORKER_RESOURCE, RegistrarEndpoint, plan

REPO = Path(__file__).resolve().parent.parent


def test_cluster_yaml_has_a_head_and_two_regional_worker_types_installing_callmeter() -> None:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert not any(k.startswith(("region:", "worker:")) for k in head["resources"])
    regions = {
        name: key.partition(":")[2]
        for name, node in types.items()
        for key in node["resources"]
        if key.startswith("region:")
    }
    assert sorted(regions.values()) == ["eu", "us"]
    for name, region in regions.items():
        key = REGION_RESOURCE.format(region)  # the name a placed shard asks for
        assert types[name]["resources"][key] > 0
    assert any("pip install" in c and "callmeter" in c for c in config["setup_commands"])


def test_a_shard_placed_in_a_region_asks_for_what_cluster_yaml_offers() -> None:
    test = parse_test(
        {
            "name": "regions",
            "groups": [
                {"name": "a", "endpoints": 3, "placement": {"region": "eu"},
                 "target": {"group": "b"}},
                {"name": "b", "endpoints": 3, "placement": {"workers": ["lab-1"]}},
            ],
        }
    )  # fmt: skip
    accounts = tuple(SipAccount(username=f"u{i}", password="p") for i in range(6))
    run_plan = plan(
        test, {"builtin": RegistrarEndpoint("builtin", "h", "h", 5060, "udp", accounts)}
    )
    wanted = {k: v for shard in run_plan.shards for k, v in shard.resources().items()}
    assert wanted == {REGION_RESOURCE.format("eu"): 3.0, WORKER_RESOURCE.format("lab-1"): 3.0}
    offered = yaml.safe_load((REPO / "cluster.yaml").read_text())["available_node_types"]
    assert any(REGION_RESOURCE.format("eu") in node["resources"] for node in offered.values())


def test_worker_join_advertises_region_and_name_sized_in_endpoints() -> None:
    assert worker_resources("onprem", "lab-1", 2000) == {
        "worker:lab-1": 2000.0,
        "region:onprem": 2000.0,
    }
    command = worker_join_command("10.0.0.1:6379", "onprem", "lab-1", 2000, node_ip="10.0.0.7")
    assert command[:3] == ["ray", "start", "--address=10.0.0.1:6379"]
    resources = next(c for c in command if c.startswith("--resources="))
    assert json.loads(resources.partition("=")[2]) == {
        "worker:lab-1": 2000.0,
        "region:onprem": 2000.0,
    }
    assert "--node-ip-address=10.0.0.7" in command and "--disable-usage-stats" in command


def test_worker_join_command_line_dry_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callmeter.cli", "worker", "join", "--address", "head:6379",
         "--region", "eu", "--name", "w1", "--capacity", "500", "--dry-run"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"ray start --address=head:6379 .*worker:w1.*500", done.stdout)
