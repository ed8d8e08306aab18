"""bench/report.py and bench/readme.py on a small recorded result (no Docker): JSON keys,
targets with their extra conditions, PNG written, docs/benchmarks.md's table generated from latest.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# bench/ is a top-level package of the repository, not part of the installed swarmlab
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

pytest.importorskip("matplotlib")

from bench import readme, report  # noqa: E402


def recorded() -> dict:
    return {
        "date": "2026-11-25",
        "machine": "2 cores, 24 GiB, nested node containers",
        "command": "python -m bench --scale 3,12",
        "bench_s": 400.0,
        "load_average": {"start": [3.0, 2.0, 1.0], "end": [4.0, 3.0, 2.0]},
        "lab": "bench3",
        "nodes": 3,
        "packages": ["netplan.io", "docker.io", "docker-cli", "docker-buildx", "docker-compose", "ufw"],
        "floor": {"node_start_s": 4.0, "install_s": 60.0, "per_node_s": {"node1": 59.0}},
        "cold": {"node_start_s": 4.0, "deploy_s": 120.0, "changed": 60, "verify_s": 9.0,
                 "operations": 30,
                 "deploy_phases": {"SSH connect": 1.0, "fact gathering / prepare": 10.0,
                                   "operation run": 105.0,
                                   "sub_deploys": {"Docker Engine": 70.0, "Swarm": 20.0}}},
        "no_change": {"deploy_s": 2.5, "changed": 0, "failed_hosts": [], "operations": 30,
                      "deploy_phases": {}},
        "day_later": {"deploy_s": 2.9, "changed": 3, "failed_hosts": [], "operations": 30,
                      "changed_ops": ["Lab packages | apt update on node1,node2,node3"],
                      "deploy_phases": {"before the first operation (start-up, SSH, facts)": 1.0}},
        "verify": {"seconds": 12.0, "passed": 20, "failed": 0, "skipped": 2, "tests": 22,
                   "tests_total_s": 6.0, "slowest": [["test_swarm::test_nodes", 2.0]]},
        "drift_repair": {"broken": "the ufw rule for 2377/tcp deleted on node1", "deploy_s": 3.5,
                         "changed": 1, "verify_s": 7.0, "verify_passed": 20, "verify_failed": 0,
                         "total_s": 10.5},
        "local": {"rootless_users": ["alice"], "converge_s": 40.0, "converge_changed": 30,
                  "no_change": {"deploy_s": 5.0, "changed": 0, "failed_hosts": [], "operations": 55,
                                "deploy_phases": {"sub_deploys": {"Rootless Docker": 2.5}}}},
        "scale": {"3": {"floor_install_s": 60.0, "cold_deploy_s": 120.0, "no_change_s": 2.5}},
    }


def statuses(result: dict) -> dict[str, str]:
    return {t["key"]: t["status"] for t in report.finalize(result)["targets"]}


def test_report_writes_json_and_png(tmp_path):
    js, png = report.write(recorded(), tmp_path)
    data = json.loads(js.read_text())
    for key in report.REQUIRED_KEYS:
        assert key in data, key
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {t["key"]: t["status"] for t in data["targets"]} == {
        "cold_over_floor": "missed",  # 120 / 60 = 2.0 > 1.3
        "no_change_s": "met",  # 2.5 <= 3, changed=0
        "day_later_s": "missed",  # 2.9 <= 3 but changed=3
        "local_no_change_s": "missed",  # 5 > 4
        "verify_s": "missed",  # 12 > 8
        "scale_12_over_floor": "not run",
        "drift_repair_s": "met",  # 10.5 <= 11, repaired, verify green
        "warm_over_empty": "not run",
    }
    day = next(t for t in data["targets"] if t["key"] == "day_later_s")
    assert day["value"] == 2.9 and day["problem"] == "changed=3"
    assert data["ratios"]["cold_over_floor"] == 2.0
    text = "\n".join(data["where_time_goes"])
    assert "Docker Engine: 70.0 s" in text and "test_swarm::test_nodes" in text
    assert "changed: Lab packages | apt update" in text and "Rootless Docker: 2.5 s" in text
    assert "drift repair" not in text  # met: not explained
    summary = report.summary(data)
    assert "[ missed] verify <= 8 s" in summary and "(changed=3)" in summary


def test_package_cache_ratio_evaluated():
    result = recorded()
    result["package_cache"] = {"empty_cold_deploy_s": 100.0, "warm_cold_deploy_s": 40.0,
                               "warm_over_empty": 0.4}
    assert statuses(result)["warm_over_empty"] == "met"
    result["package_cache"]["warm_over_empty"] = 0.8
    assert statuses(result)["warm_over_empty"] == "missed"


def test_scale_against_its_own_floor():
    result = recorded()
    result["scale"]["12"] = {"floor_install_s": 120.0, "cold_deploy_s": 150.0, "no_change_s": 6.0,
                             "cold_phases": {"sub_deploys": {"Lab packages": 100.0}}}
    r = report.ratios(result)
    assert (r["scale_12_over_floor"], r["scale_12_over_3"], r["floor_12_over_3"]) == (1.25, 1.25, 2.0)
    assert statuses(result)["scale_12_over_floor"] == "met"
    result["scale"]["12"]["cold_deploy_s"] = 180.0  # 1.5x its floor
    finalized = report.finalize(result)
    assert statuses(result)["scale_12_over_floor"] == "missed"
    text = "\n".join(finalized["where_time_goes"])
    assert "12 nodes: floor 120.0 s, cold deploy 180.0 s" in text and "Lab packages: 100.0 s" in text


def test_drift_repair_needs_a_repair_and_a_green_verify():
    result = recorded()
    result["drift_repair"]["verify_failed"] = 1
    assert statuses(result)["drift_repair_s"] == "missed"
    result = recorded()
    result["drift_repair"]["changed"] = 0  # the break did not take or the re-run did not repair it
    assert statuses(result)["drift_repair_s"] == "missed"


def test_verify_with_a_failure_misses_its_target():
    result = recorded()
    result["verify"].update(seconds=5.0, failed=2)
    assert statuses(result)["verify_s"] == "missed"
    result["verify"]["failed"] = 0
    assert statuses(result)["verify_s"] == "met"


def test_markdown_table_reads_every_figure_from_the_result():
    result = recorded()
    result["scale"]["12"] = {"floor_install_s": 120.0, "cold_deploy_s": 150.0, "no_change_s": 6.0,
                             "no_change_changed": 0}
    table = report.markdown(result)
    assert "6 min 40 s in all" in table and "[3.0, 2.0, 1.0]" in table
    assert "| no-change a day later, 3 nodes | 2.9 s, changed=3 |" in table
    assert "| 12 nodes cold / 12-node floor | 150.0 s / 120.0 s = 1.25x |" in table
    assert "rootless `alice`" in table and "= re-run 3.5 s (changed=1) + verify 7.0 s" in table
    assert "Missed: cold_over_floor, day_later_s, local_no_change_s, verify_s." in table
    result["no_change"]["deploy_s"] = 9.9  # nothing hard-coded: another figure, another table
    assert "| no-change re-run, 3 nodes | 9.9 s, changed=0 |" in report.markdown(result)


def test_readme_rewrite_replaces_only_the_marked_block():
    text = f"# x\nbefore\n{report.README_BEGIN}\nold table\n{report.README_END}\nafter\n"
    new = readme.rewrite(text, recorded())
    assert new.startswith("# x\nbefore\n") and new.endswith(f"{report.README_END}\nafter\n")
    assert "old table" not in new and "| verify, 3 nodes | 12.0 s" in new
    assert readme.rewrite(new, recorded()) == new
    with pytest.raises(ValueError):
        readme.rewrite("# no markers\n", recorded())


def test_readme_bench_table_is_latest_json():
    """docs/benchmarks.md's table is generated from bench/results/latest.json (`python -m bench.readme`)."""
    latest = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert readme.rewrite(text, latest) == text, "docs/benchmarks.md's table is stale: run python -m bench.readme"


def test_a_scale_size_that_could_not_start_is_reported_not_run():
    result = recorded()
    result["scale"]["12"] = {"error": "ProviderError: node node7: not ready after 90s"}
    assert statuses(result)["scale_12_over_floor"] == "not run"
    assert "| scale 12 nodes | not measured: `ProviderError: node node7" in report.markdown(result)
    assert "scale 12 nodes: floor None s" in report.summary(report.finalize(result))
