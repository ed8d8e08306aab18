"""The default lab shape (1 manager, 2 workers, Debian 13): converge, idempotence, verify,
firewall from outside the subnet, worker fault and recovery, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.image import NodeImage
from swarmlab.model.state import PROJECT_ROOT, state_root

from .conftest import converge_tests, lab_fixture, rejoin_at_vvv_prints_no_token, swarmlab
from .drift import drift_tests
from .report_page import report_page_in_a_browser

STATE = state_root()

pytestmark = pytest.mark.live
lab = lab_fixture("trio")


test_up_converges_and_verifies, test_second_up_changes_nothing = converge_tests()


def test_report_page_in_a_browser(lab):
    """`up` wrote the page; `swarmlab report` with a workload running: headless Chromium shows every
    node, overlay and the published port in the SVG; the screenshot is saved under reports/."""
    assert (STATE / lab.spec.name / "report.html").exists(), "up did not write the report"
    shot, _ = report_page_in_a_browser(lab)
    print(f"screenshot: {shot}")


# break each checked state, verify names it, a deploy re-run repairs it (tests/live/drift.py)
test_drift_round, test_after_the_drift_rounds_nothing_changes_even_a_day_later = drift_tests()


# a label value with every shell metacharacter the spec accepts (no control characters): each
# part that a shell would run creates its own canary file
CANARIES = ("semi", "sub", "tick", "sq", "dq")
HOSTILE_LABEL = ("x;touch /tmp/swl-semi $(touch /tmp/swl-sub) `touch /tmp/swl-tick` "
                 "';touch /tmp/swl-sq;' \";touch /tmp/swl-dq;\" #c")


def test_labels_with_shell_metacharacters_land_byte_for_byte(lab, tmp_path):
    """A node label and an overlay label holding `;`, `$()`, backquotes, quotes and `#` reach
    the swarm unchanged, and no part of them runs on any node or here."""
    data = yaml.safe_load(lab.path.read_text())
    data["nodes"][0].setdefault("labels", {})["note"] = HOSTILE_LABEL
    data["swarm"]["overlays"].append({"name": "metanet", "subnet": "10.123.0.0/24",
                                      "attachable": True, "labels": {"note": HOSTILE_LABEL}})
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(yaml.safe_dump(data))
    manager = lab.spec.first_manager.name
    try:
        run = swarmlab("deploy", "--no-verify", spec=hostile)
        assert run.rc == 0, run.out + run.err
        node_labels = json.loads(lab.exec(manager, "docker", "node", "inspect", manager,
                                          "--format", "{{json .Spec.Labels}}"))
        assert node_labels.get("note") == HOSTILE_LABEL, node_labels
        net_labels = json.loads(lab.exec(manager, "docker", "network", "inspect", "metanet",
                                         "--format", "{{json .Labels}}"))
        assert net_labels == {"note": HOSTILE_LABEL}, net_labels
        for node in lab.spec.nodes:
            ran = lab.exec(node.name, "sh", "-c", "ls /tmp/swl-* 2>/dev/null; true").split()
            assert ran == [], f"label text ran on {node.name}: {ran}"
        here = [f"/tmp/swl-{c}" for c in CANARIES if os.path.exists(f"/tmp/swl-{c}")]
        assert here == [], f"label text ran where swarmlab runs: {here}"
    finally:
        lab.exec(manager, "docker", "network", "rm", "metanet", check=False)
        back = lab.run("deploy", "--no-verify")
        assert back.rc == 0, back.out + back.err
    labels = json.loads(lab.exec(manager, "docker", "node", "inspect", manager,
                                 "--format", "{{json .Spec.Labels}}"))
    assert "note" not in labels, labels  # the spec's labels again


def test_status_lists_running_nodes(lab):
    run = lab.run("status")
    assert run.rc == 0
    for node in lab.spec.nodes:
        assert f"{node.name} " in run.out and "running" in run.out


def _node_states(lab) -> dict[str, str]:
    out = lab.exec(lab.spec.first_manager.name, "docker", "node", "ls", "--format", "{{json .}}")
    rows = [json.loads(line) for line in out.splitlines()]
    return {r["Hostname"]: r["Status"] for r in rows}


def test_swarm_ports_closed_to_outside_the_lab_subnet(lab):
    """A client outside the lab subnet reaches SSH but not the swarm ports."""
    spec = lab.spec
    manager = spec.first_manager.name
    net = f"swarmlab-{spec.name}-outside"
    container = f"swarmlab-{spec.name}-outsider"
    docker_cli.docker("rm", "-f", container, check=False)
    docker_cli.docker("network", "rm", net, check=False)
    docker_cli.docker("network", "create", "--subnet", "10.87.0.0/24", "--label",
                      f"swarmlab.lab={spec.name}", net)
    mgr_container = f"swarmlab-{spec.name}-{manager}"
    try:
        docker_cli.docker("network", "connect", "--ip", "10.87.0.11", net, mgr_container)
        docker_cli.docker("run", "-d", "--name", container, "--network", net, "--ip", "10.87.0.50",
                          "--label", f"swarmlab.lab={spec.name}", "--entrypoint", "sleep",
                          NodeImage("debian-13").tag, "300")
        probe = (
            "import socket,sys\n"
            "for port in (22, 2377, 7946):\n"
            "    try:\n"
            "        socket.create_connection(('10.87.0.11', port), timeout=3).close(); print(port, 'open')\n"
            "    except OSError as e:\n"
            "        print(port, 'closed', type(e).__name__)\n"
        )
        out = docker_cli.docker("exec", container, "python3", "-c", probe)
        result = dict(line.split(" ", 1) for line in out.splitlines())
        assert result["22"] == "open", f"control: SSH should be reachable from outside: {result}"
        assert result["2377"].startswith("closed"), f"2377 reachable from outside the lab subnet: {result}"
        assert result["7946"].startswith("closed"), f"7946 reachable from outside the lab subnet: {result}"
    finally:
        docker_cli.docker("rm", "-f", container, check=False)
        docker_cli.docker("network", "disconnect", "-f", net, mgr_container, check=False)
        docker_cli.docker("network", "rm", net, check=False)


def test_worker_down_then_redeploy_brings_it_back(lab):
    worker = lab.spec.workers[0].name
    lab.exec(worker, "systemctl", "stop", "docker.socket", "docker.service")
    deadline = time.monotonic() + 60
    while _node_states(lab).get(worker) != "Down":
        assert time.monotonic() < deadline, f"manager never saw {worker} Down: {_node_states(lab)}"
        time.sleep(2)
    run = lab.run("deploy", "--no-verify")
    assert run.rc == 0, run.out + run.err
    assert run.summary["changed"] >= 1  # docker started again
    deadline = time.monotonic() + 60
    while _node_states(lab).get(worker) != "Ready":
        assert time.monotonic() < deadline, f"{worker} not Ready again: {_node_states(lab)}"
        time.sleep(2)


def test_stale_member_is_reconciled(lab):
    """A worker that left the swarm rejoins; its old Down entry is removed."""
    worker = lab.spec.workers[1].name
    lab.exec(worker, "docker", "swarm", "leave", "--force")
    run = lab.run("deploy", "--no-verify")
    assert run.rc == 0, run.out + run.err
    deadline = time.monotonic() + 30
    while True:
        out = lab.exec(lab.spec.first_manager.name, "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
        rows = [line.split() for line in out.splitlines()]
        mine = [r for r in rows if r[0] == worker]
        if mine == [[worker, "Ready"]]:
            break
        assert time.monotonic() < deadline, f"{worker} not reconciled: {rows}"
        time.sleep(2)
    again = lab.run("deploy", "--no-verify")
    assert again.summary["changed"] == 0, again.out


def test_join_tokens_never_logged(lab):
    manager = lab.spec.first_manager.name
    tokens = [
        lab.exec(manager, "docker", "swarm", "join-token", "-q", role).strip()
        for role in ("worker", "manager")
    ]
    logs = list((STATE / lab.spec.name).glob("*.log"))
    assert logs, "no deploy logs to check"
    for log in logs:
        text = log.read_text(errors="replace")
        for token in tokens:
            assert token not in text, f"a join token appears in {log}"


def test_join_token_not_printed_at_vvv(lab):
    """pyinfra -vvv prints fact output: the token is read so that it never is."""
    rejoin_at_vvv_prints_no_token(lab, STATE / lab.spec.name)


def test_down_node_removed_from_spec_is_removed_from_swarm(lab, tmp_path):
    """Drop the last worker from the spec and stop it: the next deploy removes it."""
    gone = lab.spec.workers[-1].name
    data = yaml.safe_load(lab.path.read_text())
    data["nodes"] = [n for n in data["nodes"] if n["name"] != gone]
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(yaml.safe_dump(data))
    docker_cli.docker("stop", f"swarmlab-{lab.spec.name}-{gone}")
    deadline = time.monotonic() + 60
    while _node_states(lab).get(gone) != "Down":
        assert time.monotonic() < deadline, f"manager never saw {gone} Down: {_node_states(lab)}"
        time.sleep(2)
    run = swarmlab("deploy", "--no-verify", spec=smaller)
    assert run.rc == 0, run.out + run.err
    assert gone not in _node_states(lab), _node_states(lab)


def test_network_deploy_refuses_to_drop_its_own_connection(lab):
    """Connect through a second address on the lab NIC: the netplan change would drop it."""
    node = lab.spec.workers[0]
    extra = "10.88.0.112"
    lab.exec(node.name, "ip", "addr", "add", f"{extra}/24", "dev", "eth0")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pyinfra", "-y", "--limit", node.name,
             "--data", f"ssh_hostname={extra}", "inventories/lab.py", "deploys/network.py"],
            capture_output=True, text=True, cwd=PROJECT_ROOT,
            env=dict(os.environ, SWARMLAB_SPEC=str(lab.path)),
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert f"refusing to configure eth0: pyinfra is connected through {extra}" in out, out
        # nothing was cut: the address pyinfra used is still there
        assert extra in lab.exec(node.name, "ip", "-4", "addr", "show", "eth0")
    finally:
        lab.exec(node.name, "ip", "addr", "del", f"{extra}/24", "dev", "eth0", check=False)
