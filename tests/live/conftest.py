"""Live tests: real node containers on the local Docker engine, brought up and torn down here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.provider import LabNames
from swarmlab.model.spec import LabSpec, load_spec
from swarmlab.model.state import state_root

LABS = Path(__file__).parent / "labs"
# one lab state directory for the session and every command it starts, whatever their cwd
# (the default, ./.swarmlab, follows the current directory)
os.environ.setdefault("SWARMLAB_STATE", str(state_root()))
SUMMARY_RE = re.compile(
    r"^summary: hosts=(\d+) changed=(\d+) failed=(\d+)(?: verified=(\d+)/(\d+) skipped=(\d+))?"
    r"(?: security=(\d+)/(\d+)/(\d+))?$", re.M
)


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def summary(self) -> dict[str, int]:
        m = SUMMARY_RE.search(self.out)
        assert m, f"no summary line in:\n{self.out}\n{self.err}"
        keys = ("hosts", "changed", "failed", "verified", "total", "skipped",
                "security_pass", "security_lab", "security_fail")
        return {k: int(v) for k, v in zip(keys, m.groups(), strict=True) if v is not None}


def swarmlab(*args: str, spec: Path) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "swarmlab.cli", *args, "--spec", str(spec)],
        capture_output=True, text=True, env=dict(os.environ),
    )
    print(proc.stdout, proc.stderr)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def node_exec(spec: LabSpec, node: str, *cmd: str, check: bool = True) -> str:
    return docker_cli.docker("exec", LabNames(spec.name).container(node), *cmd, check=check)


class Lab:
    """A lab under test: its spec file, parsed spec and CLI helpers."""

    def __init__(self, name: str):
        self.path = LABS / f"{name}.yaml"
        self.spec = load_spec(self.path)

    def run(self, *args: str) -> Run:
        return swarmlab(*args, spec=self.path)

    def exec(self, node: str, *cmd: str, check: bool = True) -> str:
        return node_exec(self.spec, node, *cmd, check=check)


def _engine() -> None:
    if not docker_cli.engine_available():
        pytest.fail("live tests need a Docker engine (make test starts one: scripts/host-setup.sh)")


def lab_fixture(name: str):
    @pytest.fixture(scope="module")
    def _lab():
        _engine()
        lab = Lab(name)
        lab.run("down")  # leftovers of an interrupted earlier run
        yield lab
        down = lab.run("down")
        assert down.rc == 0, down.err
        assert not docker_cli.ids("container", f"swarmlab.lab={lab.spec.name}")

    return _lab


def rejoin_at_vvv_prints_no_token(lab: Lab, state_dir: Path) -> str:
    """A worker leaves the swarm; `pyinfra ... deploys/swarm.py -vvv --limit WORKER` makes it
    join again, reading the token from the first manager. Neither join token may appear in
    pyinfra's output (fact output is printed at -vvv) or in the lab's logs. Returns the output.
    """
    from swarmlab.model.state import PROJECT_ROOT

    worker = lab.spec.workers[0].name
    manager = lab.spec.first_manager.name
    lab.exec(worker, "docker", "swarm", "leave", "--force")
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "-vvv", "--limit", worker,
         "inventories/lab.py", "deploys/swarm.py"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
        env=dict(os.environ, SWARMLAB_SPEC=str(lab.path)),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    node_state = lab.exec(worker, "docker", "info", "-f", "{{.Swarm.LocalNodeState}}").strip()
    assert node_state == "active", out[-5000:]
    # the check can fail: at -vvv pyinfra does print fact output (the worker's swarm state)
    assert '"LocalNodeState"' in out, "no fact output at -vvv: the check proves nothing"
    assert "swarm join --token *MASKED*" in out
    tokens = [lab.exec(manager, "docker", "swarm", "join-token", "-q", role).strip()
              for role in ("worker", "manager")]
    assert all(t.startswith("SWMTKN-") for t in tokens), tokens
    for token in tokens:
        assert token not in out, "a join token is printed at -vvv"
        for log in state_dir.glob("*.log"):
            assert token not in log.read_text(errors="replace"), f"a join token is in {log}"
    return out


def converge_tests():
    """Molecule's converge + idempotence steps for a lab module (its `lab` fixture): `up`
    converges with every check verified, and a second `up` changes nothing."""

    def test_up_converges_and_verifies(lab):
        run = lab.run("up")
        assert run.rc == 0, run.out + run.err
        s = run.summary
        assert s["hosts"] == len(lab.spec.nodes) and s["failed"] == 0 and s["changed"] > 0
        assert s["verified"] == s["total"] > 0, "some verification failed"
        # skips must carry their reason (missing kernel features), never silently pass
        if s["skipped"]:
            assert "skipped: kernel has no" in run.out
        # up ends with the lab report (the page's path)
        assert any(line.startswith("report: ") for line in run.out.splitlines()), run.out[-2000:]

    def test_second_up_changes_nothing(lab):
        run = lab.run("up", "--no-verify")
        assert run.rc == 0, run.out + run.err
        assert run.summary["changed"] == 0, run.out
        assert "node image (" in run.out and "cached" in run.out

    return test_up_converges_and_verifies, test_second_up_changes_nothing
