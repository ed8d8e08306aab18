"""One cell of the nightly matrix: a container lab of one distro and Docker source.

Runs where registries are reachable (a hosted CI runner): Ubuntu and Manjaro node images come
from their base images there. Writes the JUnit report and the summary line into reports/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from swarmlab import pipeline
from swarmlab.containerlab import provider
from swarmlab.spec import load_spec


def nightly_spec(distro: str, source: str) -> dict:
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
            for i in (1, 2, 3)
        ],
    }


def run_nightly(distro: str, source: str, junit: Path) -> int:
    junit.parent.mkdir(parents=True, exist_ok=True)
    spec_file = junit.parent / f"spec-{distro}-{source}.yaml"
    spec_file.write_text(yaml.safe_dump(nightly_spec(distro, source), sort_keys=False))
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
