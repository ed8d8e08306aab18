"""One cell of the nightly matrix: a container lab of one distro and Docker source.

Runs where registries are reachable (a hosted CI runner): Ubuntu and Manjaro node images come
from their base images there. Writes the JUnit report and the summary line into reports/.
"""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import yaml

from swarmlab.cli import pipeline
from swarmlab.containerlab import provider
from swarmlab.model.shipped import checkout
from swarmlab.model.spec import load_spec

DEFAULT_NODES = 3  # what the workflow runs: 1 manager, 2 workers
MAX_NODES = 9
# a repo file (not shipped): the checkout's, else the one in the current directory (a clone)
WORKFLOW = (checkout() or Path.cwd()) / ".github" / "workflows" / "nightly.yml"
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def nightly_spec(distro: str, source: str, nodes: int = DEFAULT_NODES) -> dict:
    """The cell's lab: `nodes` nodes of one distro (the first is the manager), one overlay."""
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"a nightly lab has 1 to {MAX_NODES} nodes, not {nodes}")
    slug = distro.replace(".", "")
    return {
        "name": f"nightly-{slug}-{source}",
        "network": {"subnet": "10.86.0.0/24", "gateway": "10.86.0.1", "dns": ["127.0.0.11"],
                    "interface": "eth0"},
        "docker": {"source": source},
        "swarm": {"overlays": [{"name": "labnet", "subnet": "10.124.0.0/24", "attachable": True}]},
        "nodes": [
            {"name": f"n{i}", "distro": distro, "ip": f"10.86.0.{10 + i}",
             "role": "manager" if i == 1 else "worker"}
            for i in range(1, nodes + 1)
        ],
    }


def run_nightly(distro: str, source: str, junit: Path, nodes: int = DEFAULT_NODES) -> int:
    """Up, deploy, verify, a no-change re-run, down; 0 when all of it passed."""
    junit.parent.mkdir(parents=True, exist_ok=True)
    spec_file = junit.parent / f"spec-{distro}-{source}.yaml"
    spec_file.write_text(yaml.safe_dump(nightly_spec(distro, source, nodes), sort_keys=False))
    spec = load_spec(spec_file)
    provider.remove_lab(spec.name)
    try:
        pipeline.nodes_up(spec)
        deploy = pipeline.run_deploy(spec, spec_file.resolve())
        shutil.copy(deploy.log, junit.parent / "deploy.log")
        verify = None
        if not deploy.failed_hosts:
            verify = pipeline.run_verify(spec, spec_file.resolve())
            shutil.copy(verify.report, junit)
        again = pipeline.run_deploy(spec, spec_file.resolve()) if verify else None
        line = pipeline.summary_line(deploy, verify, len(spec.nodes))
        if again is not None:
            line += f" rerun_changed={again.changed}"
        print(line)
        (junit.parent / "summary.txt").write_text(line + "\n")
        ok = verify is not None and not verify.failed and again is not None and again.changed == 0
        return 0 if ok else 1
    finally:
        provider.remove_lab(spec.name)


def workflow_cells(workflow: Path = WORKFLOW) -> tuple[dict, list[tuple[str, str]]]:
    """The workflow's matrix job and the (distro, source) cells it runs (exclusions applied)."""
    data = yaml.safe_load(workflow.read_text())
    [job] = [j for j in data["jobs"].values() if "matrix" in j.get("strategy", {})]
    matrix = job["strategy"]["matrix"]
    excluded = {(e["distro"], e["source"]) for e in matrix.get("exclude", [])}
    cells = [c for c in itertools.product(matrix["distro"], matrix["source"]) if c not in excluded]
    return job, cells


def workflow_run_steps(distro: str, source: str, workflow: Path = WORKFLOW) -> list[str]:
    """The matrix job's `run:` commands for one cell, `${{ matrix.* }}` filled in.

    Raises ValueError for a cell the matrix does not run, and for any other expression (a
    local run cannot know its value).
    """
    job, cells = workflow_cells(workflow)
    if (distro, source) not in cells:
        raise ValueError(f"the nightly matrix does not run {distro}/{source}")
    values = {"matrix.distro": distro, "matrix.source": source}

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise ValueError(f"{workflow.name}: cannot run `${{{{ {m.group(1)} }}}}` locally")
        return values[m.group(1)]

    steps = [s for s in job["steps"] if "run" in s]
    for step in steps:
        if "if" in step:
            raise ValueError(f"{workflow.name}: cannot evaluate `if: {step['if']}` locally")
    return [_EXPRESSION.sub(fill, s["run"].strip()) for s in steps]
