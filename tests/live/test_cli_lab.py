"""Every node-facing command against a lab that is down, then half up (one node container
stopped), and the deploy's refusal of a firewall that would cut its SSH connection (sshd also on
2222, the deploy connected there, firewall.ssh_port 22). Only node containers: no deploy runs.

    flock /tmp/swarmlab-live-test_cli_lab.lock .venv/bin/pytest tests/live/test_cli_lab.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from swarmlab.cli import pipeline
from swarmlab.control.inventory import CONNECTION_FILE
from swarmlab.model.state import state_root

from .conftest import Lab, Run, lab_fixture

lab = lab_fixture("cli")
NODE_FACING = [("status",), ("verify",), ("report",), ("explain", "c1"), ("ssh", "c1", "true")]


def cli(lab: Lab, *args: str) -> Run:
    """`swarmlab COMMAND --spec SPEC ARGS` (the spec before the node and its command)."""
    proc = subprocess.run([sys.executable, "-m", "swarmlab.cli", args[0], "--spec", str(lab.path),
                           *args[1:]], capture_output=True, text=True, env=dict(os.environ),
                          timeout=300)
    print(args, proc.returncode, proc.stdout, proc.stderr)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def silent_lines(run: Run, nodes: list[str]) -> list[str]:
    return [line for line in run.err.splitlines() if line.startswith(tuple(f"  {n} (" for n in nodes))]


@pytest.mark.parametrize("command", NODE_FACING, ids=[c[0] for c in NODE_FACING])
def test_lab_down(lab, command):
    """Not up (never, or brought down): exit 3, one line per node, the fix with this --spec."""
    run = cli(lab, *command)
    assert run.rc == 3, run.out + run.err
    nodes = ["c1"] if command[0] in ("explain", "ssh") else ["c1", "c2", "c3"]
    lines = silent_lines(run, nodes)
    assert len(lines) == len(nodes), run.err
    # ssh's own error; `status` skips the SSH check of a container it knows is absent (a lab
    # brought up and down before: its state is kept)
    assert all(": ssh: connect to host 10.153.0.1" in line or "timed out" in line
               or line.endswith(": not checked: the machine is absent") for line in lines), lines
    assert f"fix: swarmlab up --spec {lab.path}" in run.err
    assert "CommandResult" not in run.err + run.out and "@@@swarmlab" not in run.err + run.out
    assert "✓" not in run.out


@pytest.fixture(scope="module")
def half_up(lab):
    """Nodes up (no deploy), then c3's container stopped."""
    pipeline.nodes_up(lab.spec, cache=False)  # after the lab-down tests (module order)
    subprocess.run(["docker", "stop", "-t", "2", "swarmlab-ci-cli-c3"], check=True, capture_output=True)
    yield lab
    subprocess.run(["docker", "start", "swarmlab-ci-cli-c3"], check=True, capture_output=True)


def test_half_up_status(half_up):
    run = cli(half_up, "status", "--json")
    assert run.rc == 1, run.err
    data = json.loads(run.out)
    assert data["kind"] == "container lab" and data["answering"] == 2
    assert [(n["name"], n["machine"], n["ssh"]) for n in data["nodes"]] == [
        ("c1", "running", "ok"), ("c2", "running", "ok"), ("c3", "exited", "no")]
    text = cli(half_up, "status")
    assert text.rc == 1 and text.out.splitlines()[0].startswith("lab ci-cli · container lab · 2/3")


def test_half_up_verify_refuses(half_up):
    run = cli(half_up, "verify")
    assert run.rc == 1
    assert "1 of 3 nodes do not answer over SSH; this command needs every node" in run.err
    assert len(silent_lines(run, ["c3"])) == 1 and "==> verify" not in run.out


def test_half_up_report_names_the_silent_node(half_up):
    run = cli(half_up, "report", "--json")
    assert run.rc == 1, run.err
    data = json.loads(run.out)
    assert list(data["unreachable"]) == ["c3"] and data["unreachable"]["c3"].startswith("ssh: ")
    facts = json.loads(open(data["json"]).read())
    assert facts["nodes"]["c3"]["error"] == data["unreachable"]["c3"]
    assert "error" not in facts["nodes"]["c1"]


def test_half_up_explain_and_ssh(half_up):
    assert cli(half_up, "explain", "c3").rc == 3
    assert cli(half_up, "ssh", "c3", "true").rc == 3
    assert cli(half_up, "explain", "c1").rc == 0
    run = cli(half_up, "ssh", "c1", "hostname")
    assert run.rc == 0 and run.out.strip(), run.err


def test_deploy_refuses_a_firewall_that_would_cut_its_ssh_port(half_up):
    """sshd on every node also listens on 2222 and the lab connects there: firewall.ssh_port is
    22, so the firewall would cut the deploy's connection; the deploy changes nothing."""
    lab = half_up
    subprocess.run(["docker", "start", "swarmlab-ci-cli-c3"], check=True, capture_output=True)
    pipeline.nodes_up(lab.spec, cache=False)  # c3 ready again
    for node in ("c1", "c2", "c3"):
        lab.exec(node, "sh", "-c", "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/90-test.conf"
                 " && (systemctl reload ssh || systemctl reload sshd)")
    connection = state_root() / lab.spec.name / CONNECTION_FILE
    saved = connection.read_text()
    connection.write_text(json.dumps({**json.loads(saved), "ssh_port": 2222}))
    log = state_root() / lab.spec.name / "deploy-swarm.log"
    log.unlink(missing_ok=True)
    try:
        run = cli(lab, "deploy", "--no-verify")
        assert run.rc == 2, run.out + run.err
        assert ("firewall.ssh_port is 22, but this deploy's SSH connection reaches c1 on port 2222, "
                "c2 on port 2222, c3 on port 2222") in run.err
        assert "Nothing was changed" in run.err and not log.exists()  # pyinfra never started
        # and the same nodes on port 22 pass the guard: the port decides, not the lab
        status = cli(lab, "status", "--json")
        assert status.rc == 0 and json.loads(status.out)["answering"] == 3
    finally:
        connection.write_text(saved)
