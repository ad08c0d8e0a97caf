"""Distributed runs on Ray: placement on a simulated three-node cluster, the quickstart end to
end through the one writer, impairment, a shard killed mid-run, and the command itself.

One simulated cluster for the module (``ray.cluster_utils.Cluster``, loopback only, its own
temp dir): the head carries ``region:eu``, a second node ``region:us`` and a third the named
worker ``worker:lab1``. Nothing here stops Ray processes it did not start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import LOCAL_ENV  # first: it sets what Ray reads when imported

ray = pytest.importorskip("ray")

from actors.driver import CapacityError, RunResult, run_test  # noqa: E402
from callmeter.models import load_test, parse_test  # noqa: E402
from callmeter.store.writer import Store  # noqa: E402

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="cm-rt-")
    os.environ["RAY_TMPDIR"] = temp_dir  # the cluster's address file too, not /tmp/ray
    os.makedirs(os.path.join(temp_dir, "ray"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2, "resources": {"region:eu": 100}, "node_ip_address": "127.0.0.1",
            "include_dashboard": False, "temp_dir": os.path.join(temp_dir, "ray"),
        },
    )  # fmt: skip
    cluster.add_node(num_cpus=1, resources={"region:us": 100}, node_ip_address="127.0.0.1")
    cluster.add_node(num_cpus=1, resources={"worker:lab1": 100}, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop("RAY_TMPDIR", None)
        shutil.rmtree(temp_dir, ignore_errors=True)


def quick(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": "rt",
        "call_duration_s": 3,
        "buildup_s": 1,
        "groups": [
            {"name": "callers", "endpoints": 3, "target": {"group": "callees"}},
            {"name": "callees", "endpoints": 3},
        ],
    }
    data.update(changes)
    return parse_test(data)


def run(test: Any, store: Store, **kwargs: Any) -> RunResult:
    return run_test(test, store, address="auto", **kwargs)


def count(store: Store, sql: str, *params: Any) -> Any:
    return store.connection.execute(sql, list(params)).fetchall()


def test_every_group_runs_where_its_placement_asks(cluster: Any, tmp_path: Path) -> None:
    test = quick(
        groups=[
            {"name": "eu", "endpoints": 2, "placement": {"region": "eu"},
             "target": {"group": "us"}},
            {"name": "us", "endpoints": 2, "placement": {"region": "us"}},
            {"name": "lab", "endpoints": 2, "placement": {"workers": ["lab1"]},
             "target": {"group": "anywhere"}},
            {"name": "anywhere", "endpoints": 2},
        ]
    )  # fmt: skip
    nodes = {
        next(iter(k for k in n["Resources"] if k.startswith(("region:", "worker:"))), "none"): n[
            "NodeID"
        ]
        for n in ray.nodes()
        if n["Alive"]
    }
    with Store(tmp_path / "r.duckdb") as store:
        result = run(test, store)
        assert result.status == "COMPLETED", result.reason
        placed = count(store, "SELECT group_name, node_id FROM endpoints WHERE run_id = ?",
                       result.run_id)  # fmt: skip
    where = {(group, node) for group, node in placed}
    assert ("eu", nodes["region:eu"]) in where and ("us", nodes["region:us"]) in where
    assert ("lab", nodes["worker:lab1"]) in where
    for group, node in where:
        expected = {"eu": "region:eu", "us": "region:us", "lab": "worker:lab1"}.get(group)
        if expected is not None:
            assert node == nodes[expected], group


def test_quickstart_shape_completes_with_exact_rows(cluster: Any, tmp_path: Path) -> None:
    test = quick()
    with Store(tmp_path / "q.duckdb") as store:
        result = run(test, store)
        assert result.status == "COMPLETED", result.reason
        assert result.passed
        summary = result.summary
        assert summary["success_rate"] >= 0.99
        assert summary["mos_avg"] >= 4.0
        assert summary["outcomes"] == {"SUCCESS": 6}
        # 6 endpoints x 3 s x 2 directions of media, exactly
        ((rows,),) = count(store, "SELECT count(*) FROM metrics WHERE run_id = ?", result.run_id)
        assert rows == 6 * 3 * 2
        ((outcomes,),) = count(
            store, "SELECT count(*) FROM endpoints WHERE run_id = ? AND outcome = 'SUCCESS'",
            result.run_id,
        )  # fmt: skip
        assert outcomes == 6
        ((trace,),) = count(store, "SELECT count(*) FROM sip_trace WHERE run_id = ?",
                            result.run_id)  # fmt: skip
        assert trace >= 6 * 4  # REGISTER exchanges and the calls, both ways
        ((health,),) = count(store, "SELECT count(*) FROM shard_health WHERE run_id = ?",
                             result.run_id)  # fmt: skip
        assert health >= 3


def test_impairment_shows_the_loss_it_was_given(cluster: Any, tmp_path: Path) -> None:
    test = quick(
        call_duration_s=5,
        groups=[
            {"name": "callers", "endpoints": 2, "target": {"group": "callees"}},
            {"name": "callees", "endpoints": 2,
             "impairment": {"loss_percent": 10, "direction": "receive", "seed": 4}},
        ],
    )  # fmt: skip
    with Store(tmp_path / "i.duckdb") as store:
        result = run(test, store)
        assert result.status == "COMPLETED", result.reason
        loss = dict(
            count(
                store,
                "SELECT e.group_name, 100.0 * sum(m.packets_lost) / sum(m.packets_expected) "
                "FROM metrics m JOIN endpoints e USING (run_id, endpoint_id) "
                "WHERE m.run_id = ? AND m.direction = 'receive' GROUP BY 1",
                result.run_id,
            )
        )
    assert 5.0 <= loss["callees"] <= 15.0  # 10 % asked, ~500 packets: seeded, not exact
    assert loss["callers"] == 0.0


def test_a_killed_shard_keeps_its_rows_and_its_endpoints_get_oserror(
    cluster: Any, tmp_path: Path
) -> None:
    test = quick(call_duration_s=8, buildup_s=0)
    stored: dict[str, Any] = {}
    with Store(tmp_path / "k.duckdb") as store:
        killed = threading.Event()

        def kill_one(progress: Any) -> None:
            # once media flows, kill the shard that holds the callees
            if killed.is_set() or progress.rows_written < 20 or progress.elapsed_s < 3:
                return
            actor = ray.get_actor(f"callmeter-{progress.run_id}-shard-1")
            ray.kill(actor, no_restart=True)
            killed.set()

        result = run(test, store, shard_capacity=3, on_progress=kill_one)
        assert killed.is_set()
        assert result.status == "FAILED"
        assert result.reason is not None and "shard 1 died" in result.reason
        for shard_id, outcome, n in count(
            store,
            "SELECT shard_id, outcome, count(*) FROM endpoints WHERE run_id = ? GROUP BY 1, 2",
            result.run_id,
        ):
            stored[f"{shard_id}:{outcome}"] = n
        ((rows_of_dead,),) = count(
            store,
            "SELECT count(*) FROM metrics m JOIN endpoints e USING (run_id, endpoint_id) "
            "WHERE m.run_id = ? AND e.shard_id = 1",
            result.run_id,
        )
    assert stored.get("1:OSERROR") == 3  # every endpoint of the dead shard
    assert rows_of_dead > 0  # what it sent before dying stays stored
    assert "1:SUCCESS" not in stored
    assert sum(v for k, v in stored.items() if k.startswith("0:")) == 3  # the others decided


def test_a_stopped_run_hangs_up_and_keeps_what_it_measured(cluster: Any, tmp_path: Path) -> None:
    test = quick(call_duration_s=60, buildup_s=0)
    stop = threading.Event()
    statuses: list[str] = []

    def stop_once_in_call(progress: Any) -> None:
        statuses.append(progress.status)
        if progress.phases.get("INCALL", 0) == 6 and progress.rows_written > 12:
            stop.set()

    with Store(tmp_path / "s.duckdb") as store:
        result = run(test, store, on_progress=stop_once_in_call, stop=stop)
        ((rows, seconds),) = count(
            store, "SELECT count(*), max(second) FROM metrics WHERE run_id = ?", result.run_id
        )
    assert result.status == "COMPLETED", result.reason  # stopped by request: what was measured
    assert "STOPPING" in statuses
    assert result.summary["outcomes"] == {"SUCCESS": 6}  # hung up cleanly, not torn down
    assert 0 < rows and seconds < 30  # the calls ended long before their 60 s


def test_a_region_the_cluster_lacks_fails_before_anything_starts(
    cluster: Any, tmp_path: Path
) -> None:
    test = quick(
        groups=[
            {"name": "a", "endpoints": 1, "placement": {"region": "mars"},
             "target": {"group": "b"}},
            {"name": "b", "endpoints": 1},
        ]
    )  # fmt: skip
    with Store(tmp_path / "c.duckdb") as store:
        result = run(test, store)
        assert result.status == "FAILED"
        assert result.reason is not None
        assert "region 'mars' has capacity for 0 endpoints" in result.reason
        assert "known regions: eu, us" in result.reason
        ((rows,),) = count(store, "SELECT count(*) FROM endpoints WHERE run_id = ?",
                           result.run_id)  # fmt: skip
        assert rows == 0
    assert issubclass(CapacityError, RuntimeError)


def test_callmeter_run_quickstart_json(tmp_path: Path) -> None:
    """The main job as a user runs it: its own local Ray on loopback, the built-in registrar,
    the summary as JSON, exit code 0 when the threshold is met."""
    db = tmp_path / "quick.duckdb"
    env = {**os.environ, **LOCAL_ENV}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "callmeter.cli", "run", str(REPO / "examples/quickstart.yaml"),
         "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("run_id", "status", "success_rate", "mos_avg", "jitter_ms_avg", "loss_pct_avg",
                "rtt_ms_avg", "setup_ms_p50", "setup_ms_p95", "outcomes"):  # fmt: skip
        assert key in summary, key
    assert summary["status"] == "COMPLETED"
    assert summary["outcomes"] == {"SUCCESS": 10}
    assert summary["success_rate"] == 1.0 and summary["mos_avg"] >= 4.0
    assert summary["pdd_ms_p50"] is not None  # the callees ring (180) before answering,
    assert summary["setup_ms_p50"] >= 500  # for the example's ring_s of half a second
    assert time.monotonic() - started > 10  # it really held 10 s calls (a floor, not a bound)
    quickstart = load_test(REPO / "examples/quickstart.yaml")
    with Store(db) as store:
        ((rows,),) = count(store, "SELECT count(*) FROM metrics")
    assert rows == 10 * quickstart.call_duration_s * 2


@pytest.mark.interop
def test_the_kamailio_example_runs_against_a_real_kamailio(cluster: Any, tmp_path: Path) -> None:
    """examples/kamailio.yaml as documented, pointed at a Kamailio started here with the
    example's accounts in its sqlite subscriber table (digest auth on REGISTER and INVITE)."""
    import yaml

    from tests.peers import Kamailio

    data = yaml.safe_load((REPO / "examples/kamailio.yaml").read_text())
    accounts = {a["username"]: a["password"] for a in data["registrars"]["kamailio"]["accounts"]}
    with Kamailio.start(accounts) as kamailio:
        # Kamailio here is on a free port, so its accounts' domain carries it (its aliases do)
        data["registrars"]["kamailio"]["domain"] = f"127.0.0.1:{kamailio.port}"
        del data["registrars"]["kamailio"]["port"]
        data["call_duration_s"] = 3
        path = tmp_path / "kamailio.yaml"
        path.write_text(yaml.safe_dump(data))
        test = load_test(path)
        with Store(tmp_path / "k.duckdb") as store:
            result = run(test, store)
            trace = count(
                store,
                "SELECT first_line FROM sip_trace WHERE run_id = ? AND direction = 'in'",
                result.run_id,
            )
    assert result.status == "COMPLETED", result.reason
    assert result.summary["outcomes"] == {"SUCCESS": 4}
    assert result.passed
    lines = {line for (line,) in trace}
    assert "SIP/2.0 401 Unauthorized" in lines  # Kamailio challenged the REGISTERs
