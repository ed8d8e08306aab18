"""The `Docker API over TLS` deploy offline (recorded facts): files with their modes, the
drop-in, the restart; `tls: false` removes them."""

from __future__ import annotations

from pathlib import Path

import yaml
from deployfakes import run_deploy

from swarmlab.deploy.tls import DROPIN, DockerdRuntime, docker_tls

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
        "systemctl daemon-reload", "systemctl restart docker.service"]
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
        "systemctl daemon-reload", "systemctl restart docker.service"]
