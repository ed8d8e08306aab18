"""Issue #13 on one lab (3 managers, Debian 13): the Docker API over TLS with contexts on this
machine, an autolocked swarm unlocked by a deploy re-run after a restart, and the `hardened`
security profile passing the CIS checks; drift rounds for the new checks; TLS switched off
and on again."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
import yaml

from swarmlab.control.certs import docker_config_dir, tls_dir
from swarmlab.model.state import PROJECT_ROOT, state_root

from .conftest import lab_fixture, swarmlab
from .drift import SECURE_ROUNDS, record, run_round

pytestmark = pytest.mark.live
lab = lab_fixture("secure")


def _state(lab):
    return state_root() / lab.spec.name


def _node_state(lab, node: str) -> str:
    return lab.exec(node, "docker", "info", "-f", "{{.Swarm.LocalNodeState}}", check=False).strip()


def test_secure_lab_converges_verifies_and_passes_the_hardened_profile(lab):
    run = lab.run("up")
    assert run.rc == 0, run.out + run.err
    s = run.summary
    assert s["failed"] == 0 and s["verified"] == s["total"] > 0, run.out
    assert s["security_fail"] == 0 and s["security_pass"] > 0, run.out
    for node in lab.spec.nodes:
        assert f"security {node.name}: pass=" in run.out
    assert "docker --context s1 version" in run.out
    again = lab.run("deploy", "--no-verify")
    assert again.rc == 0 and again.summary["changed"] == 0, again.out


def test_secrets_on_the_control_machine_are_private(lab):
    key = _state(lab) / "swarm-unlock-key"
    paths = [key, tls_dir(lab.spec.name) / "ca-key.pem", tls_dir(lab.spec.name) / "client" / "key.pem",
             *(tls_dir(lab.spec.name) / n.name / "server-key.pem" for n in lab.spec.nodes)]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secret = key.read_text().strip()
    looks_right = secret.startswith("SWMKEY-1-")
    assert looks_right, "no SWMKEY in the key file"
    same = lab.exec("s2", "docker", "swarm", "unlock-key", "-q").strip() == secret
    assert same, "the saved unlock key is not the swarm's"  # no values: the key stays unprinted
    for log in _state(lab).glob("*.log"):
        leaked = secret in log.read_text(errors="replace")
        assert not leaked, f"the unlock key is in {log}"
    for node in lab.spec.nodes:  # the CA key never leaves this machine
        assert "ca-key" not in lab.exec(node.name, "ls", "/etc/docker/tls")


def test_contexts_work_from_the_control_machine(lab):
    env = dict(os.environ, DOCKER_CONFIG=str(docker_config_dir(lab.spec.name)))
    for node in lab.spec.nodes:
        out = subprocess.run(["docker", "--context", node.name, "info", "-f", "{{.Name}}"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == node.name, out.stderr


def test_tls_refusals(lab):
    client = tls_dir(lab.spec.name) / "client"
    node = lab.spec.nodes[0]
    host = f"tcp://{node.ip}:2376"
    no_cert = subprocess.run(["docker", "-H", host, "--tlsverify", "--tlscacert", str(client / "ca.pem"),
                              "version"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, DOCKER_CONFIG=str(_state(lab) / "empty-docker")))
    assert no_cert.returncode != 0 and "Engine:" not in no_cert.stdout, no_cert.stdout
    plain = subprocess.run(["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, DOCKER_CONFIG=str(_state(lab) / "empty-docker")))
    assert plain.returncode != 0 and not plain.stdout.strip(), plain.stdout


PROBE = ("import socket,sys; s=socket.socket(); s.settimeout(4); s.bind((sys.argv[1], 0));\n"
         "try:\n s.connect((sys.argv[2], 2376)); print('open')\n"
         "except (TimeoutError, socket.timeout): print('dropped')\n"
         "except OSError as e: print('error', e)")


def test_2376_closed_from_outside_the_lab_subnet(lab):
    """s1 gets a second address outside the lab subnet and s2 a route back to it: a
    connection to s2:2376 from it is dropped, the same from s1's lab address connects."""
    s1, s2 = lab.spec.nodes[0], lab.spec.nodes[1]
    outside = "10.98.1.5"
    lab.exec(s1.name, "ip", "addr", "add", f"{outside}/32", "dev", "eth0")
    lab.exec(s2.name, "ip", "route", "add", f"{outside}/32", "via", s1.ip)
    try:
        assert lab.exec(s1.name, "python3", "-c", PROBE, s1.ip, s2.ip).strip() == "open"
        assert lab.exec(s1.name, "python3", "-c", PROBE, outside, s2.ip).strip() == "dropped"
    finally:
        lab.exec(s2.name, "ip", "route", "del", f"{outside}/32", check=False)
        lab.exec(s1.name, "ip", "addr", "del", f"{outside}/32", "dev", "eth0", check=False)


def test_restarted_manager_is_locked_and_a_rerun_unlocks_it(lab):
    """docker restarts on s2: it comes back locked; a deploy re-run at -vvv unlocks it with
    the saved key, which appears nowhere in pyinfra's output."""
    lab.exec("s2", "systemctl", "restart", "docker")
    deadline = time.monotonic() + 60
    while _node_state(lab, "s2") != "locked":
        assert time.monotonic() < deadline, f"s2 is {_node_state(lab, 's2')!r}, not locked"
        time.sleep(2)
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "-vvv", "inventories/lab.py", "deploys/swarm.py"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
        env=dict(os.environ, SWARMLAB_SPEC=str(lab.path)),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert _node_state(lab, "s2") == "active", out[-3000:]
    assert '"LocalNodeState"' in out, "no fact output at -vvv: the check proves nothing"
    leaked = (_state(lab) / "swarm-unlock-key").read_text().strip() in out
    assert not leaked, "the unlock key is printed at -vvv"
    verify = lab.run("verify")
    assert verify.rc == 0, verify.out + verify.err


@pytest.mark.parametrize("round_no", range(len(SECURE_ROUNDS)),
                         ids=[f"round{i}" for i in range(len(SECURE_ROUNDS))])
def test_secure_drift_round(lab, round_no):
    record(lab.spec.name, round_no, run_round(lab, SECURE_ROUNDS[round_no]))


def test_unlock_key_rotates_with_rotate_unlock_key(lab, tmp_path):
    """`swarm.rotate_unlock_key: true`: the deploy rotates the key and saves the new one (0600)."""
    key = _state(lab) / "swarm-unlock-key"
    before = key.read_text()
    data = yaml.safe_load(lab.path.read_text())
    data["swarm"]["rotate_unlock_key"] = True
    rotate = tmp_path / "secure-rotate.yaml"
    rotate.write_text(yaml.safe_dump(data))
    run = swarmlab("deploy", "--no-verify", spec=rotate)
    assert run.rc == 0, run.out + run.err
    after = key.read_text()
    rotated = after != before
    assert rotated, "the saved unlock key did not change"
    same = lab.exec("s3", "docker", "swarm", "unlock-key", "-q").strip() == after.strip()
    assert same, "the saved key is not the swarm's new key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaked = after.strip() in run.out + run.err
    assert not leaked, "the new key was printed"
    again = lab.run("deploy", "--no-verify")  # the spec without rotation: nothing to do
    assert again.rc == 0 and again.summary["changed"] == 0, again.out


def test_tls_off_removes_the_listener_and_the_rule_then_on_again(lab, tmp_path):
    data = yaml.safe_load(lab.path.read_text())
    data["docker"]["tls"] = False
    off = tmp_path / "secure-tls-off.yaml"
    off.write_text(yaml.safe_dump(data))
    run = swarmlab("deploy", "--no-verify", spec=off)
    assert run.rc == 0, run.out + run.err
    for node in lab.spec.nodes:
        assert ":2376" not in lab.exec(node.name, "ss", "-Hltn"), node.name
        assert "2376" not in lab.exec(node.name, "ufw", "show", "added"), node.name
        assert _node_state(lab, node.name) == "active", f"{node.name} left locked"
    again = swarmlab("deploy", "--no-verify", spec=off)
    assert again.rc == 0 and again.summary["changed"] == 0, again.out
    on = lab.run("deploy")
    assert on.rc == 0, on.out + on.err
    assert on.summary["verified"] == on.summary["total"] and on.summary["security_fail"] == 0, on.out
