"""The one SSH config writer: inventory host data -> OpenSSH `Host` blocks, read back by the
real `ssh -G` (which resolves a config and connects nowhere)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from swarmlab.cli import pipeline
from swarmlab.control import sshconfig
from swarmlab.control.inventory import NO_HOST_KEY_CHECK
from swarmlab.model.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
VAGRANT_KEY = "/home/dev/.vagrant/machines/my vm/node2/virtualbox/private_key"


def resolved(config: Path, host: str) -> dict[str, str]:
    """What OpenSSH makes of `host` with this config (`ssh -G`: no connection)."""
    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client")
    out = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_block_of_a_vagrant_entry() -> None:
    data = {"ssh_hostname": "127.0.0.1", "ssh_port": 2200, "ssh_user": "vagrant",
            "ssh_key": VAGRANT_KEY, **NO_HOST_KEY_CHECK}
    assert sshconfig.host_block("node2", data) == [
        "Host node2",
        "  HostName 127.0.0.1",
        "  Port 2200",
        "  User vagrant",
        f'  IdentityFile "{VAGRANT_KEY}"',
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  ControlPath /tmp/swarmlab-cm-%C",
        "",
    ]


def test_plain_entry_has_only_the_host_name_and_the_defaults() -> None:
    """Spec IPs with the user's own SSH settings: nothing is invented."""
    assert sshconfig.host_block("n1", {"ssh_hostname": "10.0.0.5"}) == [
        "Host n1", "  HostName 10.0.0.5", "  LogLevel ERROR", "  ControlPath /tmp/swarmlab-cm-%C", ""]


@pytest.mark.parametrize("bad", ['a"b', "a\nProxyCommand x"])
def test_values_that_would_break_the_file_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unusable value"):
        sshconfig.host_block("n1", {"ssh_hostname": "10.0.0.5", "ssh_user": bad})


def test_openssh_reads_the_written_file(tmp_path: Path) -> None:
    entries = [("node1", {"ssh_hostname": "10.77.0.11", "ssh_user": "lab", "ssh_key": "/k/id",
                          **NO_HOST_KEY_CHECK}),
               ("node2", {"ssh_hostname": "127.0.0.1", "ssh_port": 2200, "ssh_user": "vagrant",
                          "ssh_key": VAGRANT_KEY})]
    path = sshconfig.write_ssh_config(entries, tmp_path / "cfg")
    one, two = resolved(path, "node1"), resolved(path, "node2")
    assert (one["hostname"], one["user"], one["port"], one["identityfile"]) == ("10.77.0.11", "lab", "22", "/k/id")
    assert one["stricthostkeychecking"] == "false" and one["userknownhostsfile"] == "/dev/null"
    assert (two["hostname"], two["port"], two["identityfile"]) == ("127.0.0.1", "2200", VAGRANT_KEY)
    assert two["stricthostkeychecking"] != "false"  # Vagrant data without the flag: left as is
    # one master socket per host (%C: a hash of the connection), shared by all OpenSSH users
    assert one["controlpath"].startswith("/tmp/swarmlab-cm-") and one["controlpath"] != two["controlpath"]


def test_temporary_file_when_no_path() -> None:
    path = sshconfig.write_ssh_config([("n1", {"ssh_hostname": "10.0.0.5"})])
    try:
        assert path.name.startswith("swarmlab-ssh-") and "Host n1\n  HostName 10.0.0.5" in path.read_text()
    finally:
        path.unlink()


def test_container_lab_config_and_swarmlab_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` writes the lab's config from the inventory's connection data; `swarmlab ssh` uses it."""

    monkeypatch.setenv("SWARMLAB_STATE", str(tmp_path))
    spec = load_spec(ROOT / "labs" / "local.yaml")
    key = tmp_path / spec.name / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_text("k")
    path = pipeline.write_ssh_config(spec, {"ssh_user": "lab", "ssh_key": str(key), **NO_HOST_KEY_CHECK})
    assert path == tmp_path / spec.name / "ssh_config"
    for node in spec.nodes:
        got = resolved(path, node.name)
        assert (got["hostname"], got["user"], got["identityfile"]) == (node.ip, "lab", str(key))
