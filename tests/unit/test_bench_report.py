"""bench/report.py on a small recorded result (no Docker): JSON keys, targets, PNG written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# bench/ is a top-level package of the repository, not part of the installed swarmlab
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

pytest.importorskip("matplotlib")

from bench import report  # noqa: E402


def recorded() -> dict:
    return {
        "date": "2026-11-25",
        "machine": "2 cores, 24 GiB, nested node containers",
        "lab": "bench3",
        "nodes": 3,
        "packages": ["netplan.io", "docker.io", "docker-cli", "docker-buildx", "docker-compose", "ufw"],
        "floor": {"node_start_s": 4.0, "install_s": 60.0, "per_node_s": {"node1": 59.0}},
        "cold": {"node_start_s": 4.0, "deploy_s": 120.0, "changed": 60, "verify_s": 9.0,
                 "operations": 30,
                 "deploy_phases": {"SSH connect": 1.0, "fact gathering / prepare": 10.0,
                                   "operation run": 105.0,
                                   "sub_deploys": {"Docker Engine": 70.0, "Swarm": 20.0}}},
        "no_change": {"deploy_s": 4.0, "changed": 0, "operations": 30, "deploy_phases": {}},
        "verify": {"seconds": 12.0, "passed": 20, "failed": 0, "skipped": 2, "tests": 22,
                   "tests_total_s": 6.0, "slowest": [["test_swarm::test_nodes", 2.0]]},
        "scale": {"3": {"cold_deploy_s": 120.0, "no_change_s": 4.0}},
    }


def test_report_writes_json_and_png(tmp_path):
    js, png = report.write(recorded(), tmp_path)
    data = json.loads(js.read_text())
    for key in report.REQUIRED_KEYS:
        assert key in data, key
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status = {t["key"]: t["status"] for t in data["targets"]}
    assert status == {
        "cold_over_floor": "missed",  # 120 / 60 = 2.0 > 1.5
        "no_change_s": "met",  # 4 <= 5
        "verify_s": "missed",  # 12 > 10
        "scale_12_over_3": "not run",
        "warm_over_empty": "not run",
    }
    assert data["ratios"]["cold_over_floor"] == 2.0
    assert data["package_cache"] == {}
    text = "\n".join(data["where_time_goes"])
    assert "Docker Engine: 70.0 s" in text and "test_swarm::test_nodes" in text
    assert "[ missed] verify <= 10 s" in report.summary(data)


def test_package_cache_ratio_evaluated():
    result = recorded()
    result["package_cache"] = {"empty_cold_deploy_s": 100.0, "warm_cold_deploy_s": 40.0,
                               "warm_over_empty": 0.4}
    status = {t["key"]: t["status"] for t in report.finalize(result)["targets"]}
    assert status["warm_over_empty"] == "met"
    result["package_cache"]["warm_over_empty"] = 0.8
    status = {t["key"]: t["status"] for t in report.finalize(result)["targets"]}
    assert status["warm_over_empty"] == "missed"


def test_scale_ratio_evaluated():
    result = recorded()
    result["scale"]["12"] = {"cold_deploy_s": 150.0, "no_change_s": 6.0}
    targets = {t["key"]: t for t in report.evaluate_targets(result)}
    assert targets["scale_12_over_3"]["value"] == 1.25
    assert targets["scale_12_over_3"]["status"] == "met"
