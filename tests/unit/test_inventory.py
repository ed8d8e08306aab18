"""Unit tests for the inventory helpers (swarmlab/control/inventory.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import vagrant

from swarmlab.control import inventory
from swarmlab.control.inventory import (
    lab_groups,
    vagrant_connections,
    vagrant_ssh_data,
    write_container_connection,
)
from swarmlab.model.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "labs" / "local.yaml"
VMLAB = ROOT / "lab.yaml"

VAGRANT_DIR = "/home/dev/swarmlab/.vagrant/machines"

# Recorded `vagrant ssh-config node1` output (VirtualBox provider, Vagrant 2.4).
RECORDED_NODE1 = f"""Host node1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile {VAGRANT_DIR}/node1/virtualbox/private_key
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

"""

# Same shape for the other machines; Vagrant auto-corrects forwarded ports to 2200, 2201.
# node2's key path has a space, which Vagrant prints quoted.
RECORDED = {
    "node1": RECORDED_NODE1,
    "node2": RECORDED_NODE1.replace("node1", "node2")
    .replace("Port 2222", "Port 2200")
    .replace(
        f"IdentityFile {VAGRANT_DIR}/node2/virtualbox/private_key",
        f'IdentityFile "{VAGRANT_DIR}/my vm/node2/virtualbox/private_key"',
    ),
    "node3": RECORDED_NODE1.replace("node1", "node3").replace("Port 2222", "Port 2201"),
}

Status = namedtuple("Status", ["name", "state", "provider"])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No user SSH overrides, and a private state root with no connection files."""
    state = tmp_path / "state"
    monkeypatch.setenv("SWARMLAB_STATE", str(state))
    monkeypatch.delenv("SWARMLAB_SSH_USER", raising=False)
    monkeypatch.delenv("SWARMLAB_SSH_KEY", raising=False)
    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    monkeypatch.delenv("VAGRANT_DOTFILE_PATH", raising=False)
    return state


class FakeVagrant(vagrant.Vagrant):
    """python-vagrant's `vagrant.Vagrant` with `status` and `ssh_config` answered from recorded
    output instead of running `vagrant`; its own `conf` and accessors parse that output."""

    RUNNING = "running"
    NOT_CREATED = "not_created"
    POWEROFF = "poweroff"

    states: dict[str, str] = {}
    instances: list[FakeVagrant] = []
    status_error: Exception | None = None

    def __init__(self, root=None, quiet_stdout=True, quiet_stderr=True, env=None, **kw):
        super().__init__(root=root, quiet_stdout=quiet_stdout, quiet_stderr=quiet_stderr, env=env)
        self.root = root
        self.ssh_config_calls: list[str | None] = []
        type(self).instances.append(self)

    def status(self, vm_name=None):
        if self.status_error is not None:
            raise self.status_error
        return [Status(name, state, "virtualbox") for name, state in self.states.items()]

    def ssh_config(self, vm_name=None):
        self.ssh_config_calls.append(vm_name)
        return RECORDED[vm_name]


@pytest.fixture
def fake_vagrant(monkeypatch: pytest.MonkeyPatch) -> type[FakeVagrant]:
    """Install a fake `vagrant` module; by default node1..3 are all running."""
    cls = type("Vagrant", (FakeVagrant,), {
        "states": {"node1": "running", "node2": "running", "node3": "running"},
        "instances": [],
        "status_error": None,
    })
    module = types.ModuleType("vagrant")
    module.Vagrant = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vagrant", module)
    return cls


@pytest.fixture
def vagrant_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".vagrant" / "machines").mkdir(parents=True)
    return root


# ---------------------------------------------------------------------------- python-vagrant conf


def test_vagrant_ssh_data_from_recorded_config(fake_vagrant: type[FakeVagrant]) -> None:
    v = fake_vagrant()
    data = vagrant_ssh_data(v, "node1")
    assert data == {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": 2222,
        "ssh_user": "vagrant",
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
        "ssh_key": f"{VAGRANT_DIR}/node1/virtualbox/private_key",
    }
    assert isinstance(data["ssh_port"], int)
    assert v.ssh_config_calls == ["node1"]  # one `vagrant ssh-config`, cached by conf()


def test_vagrant_ssh_data_strips_quotes_and_keeps_spaces(fake_vagrant: type[FakeVagrant]) -> None:
    data = vagrant_ssh_data(fake_vagrant(), "node2")
    assert data["ssh_key"] == f"{VAGRANT_DIR}/my vm/node2/virtualbox/private_key"
    assert data["ssh_port"] == 2200


def test_vagrant_ssh_data_minimal_config_uses_defaults(
    fake_vagrant: type[FakeVagrant], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RECORDED, "bare", "Host bare\n  HostName 192.168.56.11\n")
    data = vagrant_ssh_data(fake_vagrant(), "bare")
    assert data["ssh_hostname"] == "192.168.56.11"
    assert data["ssh_port"] == 22
    assert data["ssh_user"] == "vagrant"
    assert "ssh_key" not in data


def test_vagrant_ssh_data_needs_a_hostname(
    fake_vagrant: type[FakeVagrant], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RECORDED, "nohost", "Host nohost\n  Port 2222\n")
    with pytest.raises(KeyError):
        vagrant_ssh_data(fake_vagrant(), "nohost")


# ---------------------------------------------------------------------------- vagrant_connections


def test_vagrant_connections_without_vagrant_dir(
    tmp_path: Path, fake_vagrant: type[FakeVagrant]
) -> None:
    assert vagrant_connections(load_spec(VMLAB), root=tmp_path) == {}
    assert fake_vagrant.instances == []  # Vagrant is not even asked


def test_vagrant_connections_reads_running_machines(
    vagrant_root: Path, fake_vagrant: type[FakeVagrant], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARMLAB_SPEC", str(VMLAB))
    conns = vagrant_connections(load_spec(VMLAB), root=vagrant_root)
    assert conns == {
        "node1": {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": 2222,
            "ssh_user": "vagrant",
            "ssh_strict_host_key_checking": "off",
            "ssh_known_hosts_file": "/dev/null",
            "ssh_key": f"{VAGRANT_DIR}/node1/virtualbox/private_key",
        },
        "node2": {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": 2200,
            "ssh_user": "vagrant",
            "ssh_strict_host_key_checking": "off",
            "ssh_known_hosts_file": "/dev/null",
            "ssh_key": f"{VAGRANT_DIR}/my vm/node2/virtualbox/private_key",
        },
        "node3": {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": 2201,
            "ssh_user": "vagrant",
            "ssh_strict_host_key_checking": "off",
            "ssh_known_hosts_file": "/dev/null",
            "ssh_key": f"{VAGRANT_DIR}/node3/virtualbox/private_key",
        },
    }
    [v] = fake_vagrant.instances
    assert v.root == str(vagrant_root)
    # the Vagrantfile reads the same spec the inventory does
    assert v.env["SWARMLAB_SPEC"] == str(VMLAB.resolve())
    assert v.ssh_config_calls == ["node1", "node2", "node3"]


def test_vagrant_connections_follow_vagrant_dotfile_path(
    tmp_path: Path, fake_vagrant: type[FakeVagrant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vagrant's state kept elsewhere (VAGRANT_DOTFILE_PATH, relative to the Vagrantfile's
    directory like Vagrant reads it): the inventory looks there, not at `.vagrant`."""
    root = tmp_path / "project"
    (root / ".vagrant").mkdir(parents=True)
    dot = tmp_path / "vagrant-state"
    (dot / "machines").mkdir(parents=True)
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(dot))
    assert list(vagrant_connections(load_spec(VMLAB), root=root)) == ["node1", "node2", "node3"]
    assert fake_vagrant.instances[0].env["VAGRANT_DOTFILE_PATH"] == str(dot)
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", "elsewhere")  # root/elsewhere: no machines
    assert vagrant_connections(load_spec(VMLAB), root=root) == {}
    assert inventory.vagrant_dotfile(root) == root / "elsewhere"


def test_vagrant_connections_skips_machines_not_running(
    vagrant_root: Path, fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.states = {"node1": "running", "node2": "poweroff", "node3": "not_created",
                           "stray": "running"}
    conns = vagrant_connections(load_spec(VMLAB), root=vagrant_root)
    assert list(conns) == ["node1"]
    assert conns["node1"]["ssh_port"] == 2222
    assert fake_vagrant.instances[0].ssh_config_calls == ["node1"]


def test_vagrant_connections_falls_back_when_status_fails(
    vagrant_root: Path, fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.status_error = OSError("vagrant: command not found")
    assert vagrant_connections(load_spec(VMLAB), root=vagrant_root) == {}


def test_vagrant_connections_retry_a_refused_query_then_warn(
    vagrant_root: Path, fake_vagrant: type[FakeVagrant], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vagrant status` refused ("machine is locked" by another vagrant process) is retried;
    one that keeps failing falls back to the spec's IPs with a warning."""
    refusals = [2]

    def status(self, vm_name=None):
        if refusals[0]:
            refusals[0] -= 1
            raise subprocess.CalledProcessError(1, ["vagrant", "status"])
        return [Status(n, "running", "docker") for n in ("node1", "node2", "node3")]

    monkeypatch.setattr(fake_vagrant, "status", status)
    monkeypatch.setattr(inventory.time, "sleep", lambda s: None)
    assert list(vagrant_connections(load_spec(VMLAB), root=vagrant_root)) == ["node1", "node2", "node3"]
    assert capsys.readouterr().err == ""
    refusals[0] = inventory.VAGRANT_TRIES
    assert vagrant_connections(load_spec(VMLAB), root=vagrant_root) == {}
    assert "Vagrant did not answer" in capsys.readouterr().err


# ---------------------------------------------------------------------------- lab_groups


def _expected(path: Path, name: str, ip: str, role: str, distro: str, lab: str) -> dict[str, Any]:
    return {
        "ssh_hostname": ip,
        "_sudo": True,
        "lab_spec_path": str(path),
        "lab_name": lab,
        "lab_node": name,
        "lab_ip": ip,
        "lab_role": role,
        "lab_distro": distro,
    }


def test_lab_groups_from_spec_only(fake_vagrant: type[FakeVagrant]) -> None:
    # The fake reports nothing running, so a real .vagrant dir in the tree cannot leak in.
    fake_vagrant.states = {}
    managers, workers = lab_groups(LOCAL)
    assert managers == [
        ("node1", _expected(LOCAL, "node1", "10.77.0.11", "manager", "debian-13", "local")),
    ]
    assert workers == [
        ("node2", _expected(LOCAL, "node2", "10.77.0.12", "worker", "debian-13", "local")),
        ("node3", _expected(LOCAL, "node3", "10.77.0.13", "worker", "debian-13", "local")),
    ]


def test_lab_groups_vmlab_roles_and_distros(fake_vagrant: type[FakeVagrant]) -> None:
    fake_vagrant.states = {}
    managers, workers = lab_groups(VMLAB)
    assert [(n, d["lab_ip"], d["lab_role"]) for n, d in managers] == [
        ("node1", "192.168.56.11", "manager")
    ]
    assert [(n, d["lab_ip"], d["lab_role"], d["lab_distro"]) for n, d in workers] == [
        ("node2", "192.168.56.12", "worker", "ubuntu-24.04"),
        ("node3", "192.168.56.13", "worker", "manjaro"),
    ]
    assert all(d["lab_name"] == "vmlab" for _, d in managers + workers)


def test_lab_groups_uses_spec_env_when_no_path(
    monkeypatch: pytest.MonkeyPatch, fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.states = {}
    monkeypatch.setenv("SWARMLAB_SPEC", str(LOCAL))
    managers, _ = lab_groups()
    assert managers[0][1]["lab_name"] == "local"
    assert managers[0][1]["lab_spec_path"] == str(LOCAL.resolve())


def test_lab_groups_user_ssh_settings_from_env(
    monkeypatch: pytest.MonkeyPatch, fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.states = {}
    monkeypatch.setenv("SWARMLAB_SSH_USER", "ops")
    monkeypatch.setenv("SWARMLAB_SSH_KEY", "/home/ops/.ssh/id_ed25519")
    managers, workers = lab_groups(LOCAL)
    for _, data in managers + workers:
        assert data["ssh_user"] == "ops"
        assert data["ssh_key"] == "/home/ops/.ssh/id_ed25519"


def test_lab_groups_with_container_connection_file(
    _clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_vagrant(*args: Any, **kwargs: Any) -> dict:
        raise AssertionError("a container lab must not consult Vagrant")

    monkeypatch.setattr(inventory, "vagrant_connections", no_vagrant)
    monkeypatch.setenv("SWARMLAB_SSH_USER", "ignored")  # the connection file wins
    spec = load_spec(LOCAL)
    key = str(_clean_env / "local" / "id_ed25519")
    written = write_container_connection(spec, {"ssh_user": "root", "ssh_key": key})
    assert written == _clean_env / "local" / "connection.json"
    assert json.loads(written.read_text()) == {"ssh_user": "root", "ssh_key": key}

    managers, workers = lab_groups(LOCAL)
    assert [n for n, _ in managers] == ["node1"]
    assert [n for n, _ in workers] == ["node2", "node3"]
    for name, data in managers + workers:
        assert data["ssh_user"] == "root"
        assert data["ssh_key"] == key
        assert data["ssh_hostname"] == spec.node(name).ip
        assert data["lab_role"] == spec.node(name).role


def test_lab_groups_connection_file_of_another_lab_is_ignored(
    fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.states = {}
    write_container_connection(load_spec(LOCAL), {"ssh_user": "root", "ssh_key": "/k"})
    managers, workers = lab_groups(VMLAB)
    assert all("ssh_user" not in d and "ssh_key" not in d for _, d in managers + workers)


def test_lab_groups_merges_vagrant_connections(
    monkeypatch: pytest.MonkeyPatch, vagrant_root: Path, fake_vagrant: type[FakeVagrant]
) -> None:
    fake_vagrant.states = {"node1": "running", "node2": "running", "node3": "poweroff"}
    real = inventory.vagrant_connections
    monkeypatch.setattr(
        inventory, "vagrant_connections", lambda spec, path=None: real(spec, root=vagrant_root, path=path)
    )
    managers, workers = lab_groups(VMLAB)
    hosts = dict(managers + workers)
    assert hosts["node1"]["ssh_hostname"] == "127.0.0.1"
    assert hosts["node1"]["ssh_port"] == 2222
    assert hosts["node2"]["ssh_port"] == 2200
    assert hosts["node2"]["ssh_key"].endswith("/my vm/node2/virtualbox/private_key")
    assert hosts["node1"]["lab_ip"] == "192.168.56.11"  # lab facts still from the spec
    # node3 is not running: it keeps the spec IP and no Vagrant settings
    assert hosts["node3"]["ssh_hostname"] == "192.168.56.13"
    assert "ssh_port" not in hosts["node3"]


def test_lab_groups_bad_spec_raises_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        lab_groups(tmp_path / "missing.yaml")
