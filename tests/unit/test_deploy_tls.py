"""The `Docker API over TLS` deploy offline (recorded facts): files with their modes, the
drop-in, the restart; `tls: false` removes them."""

from __future__ import annotations

from pathlib import Path

import yaml
from deployfakes import run_deploy
from pyinfra.api import deploy
from pyinfra.facts.server import Command

from swarmlab.provision.autolock import swarm_options
from swarmlab.provision.facts import SwarmInfo
from swarmlab.provision.tls import DROPIN, DockerdRuntime, docker_tls

ROOT = Path(__file__).resolve().parents[2]
SECURE = ROOT / "tests" / "live" / "labs" / "secure.yaml"


def _spec(tmp_path: Path, tls: bool) -> Path:
    data = yaml.safe_load(SECURE.read_text())
    data["docker"]["tls"] = tls
    path = tmp_path / "secure.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tls_on_puts_certificates_drop_in_and_restarts(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path / "state"))
    run = run_deploy(docker_tls, _spec(tmp_path, True), "s1", {
        DockerdRuntime: {"execstart": "/usr/sbin/dockerd -H fd://", "args": ["/usr/sbin/dockerd", "-H", "fd://"],
                         "started": 1},
    })
    assert not run.errors, run.errors
    for name, mode in (("ca.pem", 444), ("server-cert.pem", 444), ("server-key.pem", 400)):
        cmds = run.op(f"TLS /etc/docker/tls/{name}").commands
        assert cmds[-2:] == [f"chown root:root /etc/docker/tls/{name}", f"chmod {mode} /etc/docker/tls/{name}"]
    dropin = run.op("dockerd TLS listener drop-in").commands[0]
    assert "'-H tcp://10.98.0.11:2376 --tlsverify" in dropin and DROPIN in dropin
    assert run.op("dockerd serves the spec's Docker API").commands == [
        "systemctl daemon-reload", "systemctl reset-failed docker.service",
        "systemctl restart docker.service"]
    # the CA key stays on the control machine
    assert not any("ca-key" in c for c in run.commands)
    assert (tmp_path / "state" / "ci-secure" / "tls" / "ca-key.pem").exists()


def test_tls_off_removes_the_listener(tmp_path, monkeypatch):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path / "state"))
    running = ("/usr/sbin/dockerd -H fd:// -H tcp://10.98.0.11:2376 --tlsverify --tlscacert=/etc/docker/tls/ca.pem "
               "--tlscert=/etc/docker/tls/server-cert.pem --tlskey=/etc/docker/tls/server-key.pem").split()
    run = run_deploy(docker_tls, _spec(tmp_path, False), "s1", {
        DockerdRuntime: {"execstart": "/usr/sbin/dockerd -H fd://", "args": running, "started": 1},
    })
    assert run.op("dockerd serves the spec's Docker API").commands == [
        "systemctl daemon-reload", "systemctl reset-failed docker.service",
        "systemctl restart docker.service"]


# --- swarm options and the unlock key (swarmlab/provision/autolock.py) -----------------------


KEY = "SWMKEY-1-" + "A" * 43
CLUSTER = {"EncryptionConfig": {"AutoLockManagers": True}, "CAConfig": {"NodeCertExpiry": 720 * 3600 * 10**9},
           "Dispatcher": {"HeartbeatPeriod": 10 * 10**9}, "Orchestration": {"TaskHistoryRetentionLimit": 3}}


@deploy("options")
def _options() -> None:
    swarm_options(name="swarm options and unlock key", is_first=True)


def _run_options(tmp_path, monkeypatch, saved: str | None, **changes):
    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path / "state"))
    data = yaml.safe_load(SECURE.read_text())
    data["swarm"].update(changes)
    spec = tmp_path / "secure.yaml"
    spec.write_text(yaml.safe_dump(data))
    key = tmp_path / "state" / "ci-secure" / "swarm-unlock-key"
    if saved is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(saved + "\n")
    run = run_deploy(_options, spec, "s1", {
        SwarmInfo: {"LocalNodeState": "active", "Cluster": {"Spec": CLUSTER}},
        (Command, "docker swarm unlock-key -q"): KEY,
    })
    return run, key


def test_unlock_key_saved_once_then_nothing_to_do(tmp_path, monkeypatch):
    run, key = _run_options(tmp_path, monkeypatch, saved=None)
    assert run.op("swarm options and unlock key").changed
    assert key.read_text().strip() == KEY and (key.stat().st_mode & 0o777) == 0o600
    assert all(not out and not inp for _, _, out, inp in run.shell), "the key read may not be printed"
    again, _ = _run_options(tmp_path, monkeypatch, saved=KEY)
    assert not again.op("swarm options and unlock key").changed


def test_stale_key_file_is_replaced(tmp_path, monkeypatch):
    run, key = _run_options(tmp_path, monkeypatch, saved="SWMKEY-1-stale")
    assert run.op("swarm options and unlock key").changed and key.read_text().strip() == KEY


def test_rotation_hides_the_new_key_and_saves_it(tmp_path, monkeypatch):
    run, key = _run_options(tmp_path, monkeypatch, saved=KEY, rotate_unlock_key=True)
    cmds = run.op("swarm options and unlock key").commands
    assert cmds[0] == "docker swarm unlock-key --rotate -q >/dev/null"


def test_option_change_is_a_swarm_update(tmp_path, monkeypatch):
    run, _ = _run_options(tmp_path, monkeypatch, saved=KEY, task_history_limit=7)
    assert run.op("swarm options and unlock key").commands[0] == \
        "docker swarm update --task-history-limit 7 >/dev/null"
