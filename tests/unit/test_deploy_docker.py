"""Command generation of the Docker deploy (swarmlab/provision/docker.py) per distro, offline."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from deployfakes import (
    LOCAL,
    VMLAB,
    present_dir,
    present_file,
    recorded,
    run_deploy,
    spec_file,
)
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.facts.pacman import PacmanPackages
from pyinfra.facts.server import Groups, Users
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from swarmlab.provision.docker import install_docker, running_drift
from swarmlab.provision.facts import DockerDaemonState, DockerdRuntime, SwarmInfo, UnitActiveState
from swarmlab.provision.ops import DOCKER_RESTART

OFFICIAL = "docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin"
KEYRING = "/etc/apt/keyrings/docker.asc"
SOURCES = "/etc/apt/sources.list.d/docker.sources"

# `dpkg -l` on an Ubuntu VM with the distro's docker.io (what the official repo conflicts with).
DPKG_WITH_DOCKER_IO = """\
Desired=Unknown/Install/Remove/Purge/Hold
| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend
|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)
||/ Name            Version                 Architecture Description
+++-===============-=======================-============-==================================
ii  ca-certificates 20240203                all          Common CA certificates
ii  containerd      1.7.12-0ubuntu4.1       amd64        daemon to control runC
ii  curl            8.5.0-2ubuntu10.4       amd64        command line tool for transferring data
ii  docker.io       24.0.7-0ubuntu4.1       amd64        Linux container runtime
ii  runc            1.1.12-0ubuntu3.1       amd64        Open Container Initiative runtime
"""

DPKG_OFFICIAL_PINNED = """\
Desired=Unknown/Install/Remove/Purge/Hold
||/ Name                  Version                          Architecture Description
+++-=====================-================================-============-=====================
ii  containerd.io         1.7.22-1                         amd64        An open and reliable container runtime
ii  docker-buildx-plugin  0.17.1-1~ubuntu.24.04~noble      amd64        Docker Buildx cli plugin.
ii  docker-ce             5:27.3.1-1~ubuntu.24.04~noble    amd64        Docker: the container engine
ii  docker-ce-cli         5:27.3.1-1~ubuntu.24.04~noble    amd64        Docker CLI
ii  docker-compose-plugin 2.29.7-1~ubuntu.24.04~noble      amd64        Docker Compose (V2) plugin for the Docker CLI.
"""

PACMAN_ALL = "docker 1:27.3.1-1\ndocker-buildx 0.18.0-1\ndocker-compose 2.30.3-1\nnftables 1:1.1.1-1\n"


def ubuntu_spec(tmp_path: Path, distro: str, **docker) -> Path:
    return spec_file(tmp_path, [distro] * 3, base=VMLAB, docker={"source": "auto", **docker})


def sources_fields(text: str) -> dict[str, str]:
    """deb822 stanza -> field: value (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def op_index(run, name: str) -> int:
    return [o.short_name for o in run.ops].index(name)


@pytest.mark.parametrize(("distro", "codename"), [("ubuntu-22.04", "jammy"),
                                                  ("ubuntu-24.04", "noble")])
def test_ubuntu_official_repository(tmp_path, distro, codename):
    run = run_deploy(install_docker, ubuntu_spec(tmp_path, distro), "node1", {
        DebArch: "amd64",
        DebPackages: recorded(DebPackages, DPKG_WITH_DOCKER_IO),
    })
    assert not run.failed

    # conflicting distro packages go first, only those installed, in one apt-get remove
    remove = run.op("Remove conflicting packages").commands
    assert len(remove) == 1 and remove[0].endswith(" remove docker.io containerd runc")
    assert "apt-get" in remove[0]

    key = run.op("Docker's signing key").commands
    assert any("https://download.docker.com/linux/ubuntu/gpg" in c for c in key)
    assert any(c.startswith("mv ") and c.endswith(f" {KEYRING}") for c in key)
    assert f"chmod 644 {KEYRING}" in key

    fields = sources_fields(run.files[SOURCES])
    assert fields == {
        "Types": "deb",
        "URIs": "https://download.docker.com/linux/ubuntu",
        "Suites": codename,
        "Components": "stable",
        "Architectures": "amd64",
        "Signed-By": KEYRING,
    }
    assert run.op("apt update for Docker's repository").commands == ["apt-get update"]

    install = run.op("Docker packages").commands
    assert install[-1].endswith(f"install --no-install-recommends {OFFICIAL}")
    assert "DEBIAN_FRONTEND=noninteractive" in install[-1]
    assert not any("docker.io" in c for c in install)

    order = [op_index(run, n) for n in ("Remove conflicting packages", "Docker's signing key",
                                         "Docker's apt repository",
                                         "apt update for Docker's repository", "Docker packages")]
    assert order == sorted(order)


def test_official_repository_follows_the_host_architecture(tmp_path):
    run = run_deploy(install_docker, ubuntu_spec(tmp_path, "ubuntu-24.04"), "node1",
                     {DebArch: "arm64"})
    assert sources_fields(run.files[SOURCES])["Architectures"] == "arm64"


def test_unchanged_repository_skips_the_extra_apt_update(tmp_path):
    spec = ubuntu_spec(tmp_path, "ubuntu-24.04")
    first = run_deploy(install_docker, spec, "node1", {DebArch: "amd64"})
    facts = {
        DebArch: "amd64",
        **present_file(SOURCES, first.files[SOURCES]),
        **present_file(KEYRING, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"),
    }
    again = run_deploy(install_docker, spec, "node1", facts)
    assert again.op("Docker's apt repository").commands == []
    assert again.op("apt update for Docker's repository").commands == []
    assert again.op("Docker's signing key").commands == []  # not downloaded again


def _apt_sources(arch: str) -> str:
    """AptSources' recorded output: Docker's repository in a deb822 file (another name)."""
    return ("##PYINFRA_FILE /etc/apt/sources.list.d/download-docker.sources\n"
            "Types: deb\nURIs: https://download.docker.com/linux/ubuntu\nSuites: noble\n"
            f"Components: stable\nArchitectures: {arch}\nSigned-By: {KEYRING}\n")


def test_repository_apt_already_lists_is_not_written_again(tmp_path):
    spec = ubuntu_spec(tmp_path, "ubuntu-24.04")
    run = run_deploy(install_docker, spec, "node1", {
        DebArch: "amd64", AptSources: recorded(AptSources, _apt_sources("amd64"))})
    assert run.op("Docker's apt repository").commands == []
    assert SOURCES not in run.files
    assert run.op("apt update for Docker's repository").commands == []


def test_repository_listed_for_another_architecture_is_written(tmp_path):
    spec = ubuntu_spec(tmp_path, "ubuntu-24.04")
    run = run_deploy(install_docker, spec, "node1", {
        DebArch: "arm64", AptSources: recorded(AptSources, _apt_sources("amd64"))})
    assert sources_fields(run.files[SOURCES])["Architectures"] == "arm64"
    assert run.op("apt update for Docker's repository").commands == ["apt-get update"]


def test_official_version_pin(tmp_path):
    version = "5:27.3.1-1~ubuntu.24.04~noble"
    spec = ubuntu_spec(tmp_path, "ubuntu-24.04", version=version)
    run = run_deploy(install_docker, spec, "node1", {DebArch: "amd64"})
    words = shlex.split(run.op("Docker packages").commands[-1])
    assert words[-7:] == ["install", "--no-install-recommends", f"docker-ce={version}",
                          f"docker-ce-cli={version}", "containerd.io", "docker-buildx-plugin",
                          "docker-compose-plugin"]

    # the pinned versions installed: nothing to install (only the cached apt update)
    pinned = run_deploy(install_docker, spec, "node1", {
        DebArch: "amd64", DebPackages: recorded(DebPackages, DPKG_OFFICIAL_PINNED),
    })
    assert not any(" install " in c for c in pinned.op("Docker packages").commands)


def test_debian12_distro_source_fails_the_host_with_the_fix(tmp_path):
    spec = spec_file(tmp_path, ["debian-12"] * 3, docker={"source": "distro"})
    run = run_deploy(install_docker, spec, "node2", {DebArch: "amd64"})
    assert run.failed
    assert [o.short_name for o in run.ops] == ["Docker packages available"]
    (message,) = run.errors
    assert "node2" in message
    assert "buildx" in message and "compose v2" in message
    assert "docker.source: official" in message
    assert run.commands == ["function _fail"]
    assert run.files == {}


def test_debian12_auto_source_is_the_distro_and_fails_too(tmp_path):
    spec = spec_file(tmp_path, ["debian-12"] * 3, docker={"source": "auto"})
    run = run_deploy(install_docker, spec, "node1")
    assert run.failed
    assert "docker.source: official" in run.errors[0]


def test_debian12_official_source_works(tmp_path):
    spec = spec_file(tmp_path, ["debian-12"] * 3, docker={"source": "official"})
    run = run_deploy(install_docker, spec, "node1", {DebArch: "amd64"})
    assert not run.failed and run.errors == []
    fields = sources_fields(run.files[SOURCES])
    assert fields["URIs"] == "https://download.docker.com/linux/debian"
    assert fields["Suites"] == "bookworm"
    assert any("https://download.docker.com/linux/debian/gpg" in c
               for c in run.op("Docker's signing key").commands)
    assert run.op("Docker packages").commands[-1].endswith(f" {OFFICIAL}")


def test_debian13_distro_packages(tmp_path):
    run = run_deploy(install_docker, LOCAL, "node1", {DebArch: "amd64"})
    assert not run.failed
    install = run.op("Docker packages").commands
    assert install[-1].endswith(
        "install --no-install-recommends docker.io docker-cli docker-buildx docker-compose"
    )
    # no Docker repository on the distro source
    assert SOURCES not in run.files
    assert not run.has_op("Docker's signing key")
    assert not run.has_op("Remove conflicting packages")
    assert not any("download.docker.com" in c for c in run.commands)


def test_manjaro_full_sync_installs_missing_packages():
    run = run_deploy(install_docker, VMLAB, "node3")  # manjaro in lab.yaml
    assert not run.failed
    assert run.op("Docker packages (full sync)").commands == [
        "pacman -Syu --noconfirm --needed docker docker-buildx docker-compose"
    ]
    assert not any("apt" in c for c in run.commands)

    some = run_deploy(install_docker, VMLAB, "node3",
                      {PacmanPackages: recorded(PacmanPackages, "docker 1:27.3.1-1\n")})
    assert some.op("Docker packages (full sync)").commands == [
        "pacman -Syu --noconfirm --needed docker-buildx docker-compose"
    ]


def test_manjaro_installed_packages_sync_nothing():
    run = run_deploy(install_docker, VMLAB, "node3",
                     {PacmanPackages: recorded(PacmanPackages, PACMAN_ALL)})
    assert run.op("Docker packages (full sync)").commands == []
    assert not any(c.startswith("pacman") for c in run.commands)


def test_converged_manjaro_host_changes_nothing():
    fresh = run_deploy(install_docker, VMLAB, "node3")
    facts = {
        PacmanPackages: recorded(PacmanPackages, PACMAN_ALL),
        SystemdStatus: {"docker.service": True},
        SystemdEnabled: {"docker.service": True},
        DockerDaemonState: _daemon(),
        Users: {"vagrant": {"home": "/home/vagrant", "group": "vagrant", "groups": ["docker"],
                            "comment": None, "shell": "/bin/bash", "uid": 1000, "gid": 1000,
                            "lastlog": None, "password": None}},
        Groups: ["docker", "vagrant"],
        **present_dir("/etc/docker"),
        **present_dir("/home/vagrant", user="vagrant", group="vagrant"),
        **present_file("/etc/docker/daemon.json", fresh.files["/etc/docker/daemon.json"]),
    }
    run = run_deploy(install_docker, VMLAB, "node3", facts)
    assert run.commands == []
    assert not run.failed


def test_daemon_json_content(tmp_path):
    run = run_deploy(install_docker, LOCAL, "node1")
    assert json.loads(run.files["/etc/docker/daemon.json"]) == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "live-restore": False,  # incompatible with swarm mode
    }
    assert "chmod 644 /etc/docker/daemon.json" in run.op("daemon.json").commands

    spec = spec_file(tmp_path, swarm={"enabled": False},
                     docker={"source": "distro", "daemon": {"debug": True}, "log_opts": {}})
    custom = json.loads(run_deploy(install_docker, spec, "node1").files["/etc/docker/daemon.json"])
    assert custom == {"log-driver": "json-file", "debug": True}


def _daemon(driver: str = "json-file", mtime: int = 100, started: int = 200) -> dict:
    """A DockerDaemonState value: docker info's fields, daemon.json mtime, daemon start time."""
    return {"info": {"LoggingDriver": driver, "LiveRestoreEnabled": False}, "mtime": mtime,
            "started": started}


def test_docker_restarts_when_the_running_daemon_differs_from_daemon_json():
    """Decided from the running daemon, not from "the file changed in this run" (another
    operation may have written it, or an earlier restart failed)."""
    restart = "dockerd runs with daemon.json"
    # fresh host: docker is not answering yet; the package starts it with the file in place
    fresh = run_deploy(install_docker, VMLAB, "node3")
    assert fresh.op(restart).commands == []

    installed = {PacmanPackages: recorded(PacmanPackages, PACMAN_ALL),
                 SystemdStatus: {"docker.service": True}, SystemdEnabled: {"docker.service": True},
                 **present_file("/etc/docker/daemon.json", fresh.files["/etc/docker/daemon.json"])}
    same = run_deploy(install_docker, VMLAB, "node3", {**installed, DockerDaemonState: _daemon()})
    assert same.op(restart).commands == []
    # running with another log driver (file restored without a restart)
    other = run_deploy(install_docker, VMLAB, "node3", {**installed, DockerDaemonState: _daemon("local")})
    assert other.op(restart).commands == list(DOCKER_RESTART)
    # file written after the daemon started (e.g. by the Lab packages step in this run)
    newer = run_deploy(install_docker, VMLAB, "node3",
                       {**installed, DockerDaemonState: _daemon(mtime=300, started=200)})
    assert newer.op(restart).commands == list(DOCKER_RESTART)


def test_running_drift_names_what_differs():
    cfg = {"log-driver": "json-file", "live-restore": False}
    assert running_drift(cfg, _daemon()) == []
    assert running_drift(cfg, _daemon("local")) == [
        "log-driver: dockerd runs with 'local', daemon.json says 'json-file'"
    ]
    assert "written after dockerd started" in running_drift(cfg, _daemon(mtime=201))[0]
    assert running_drift(cfg, {}) == ["dockerd does not answer"]


def test_daemon_state_fact_parses_its_output():
    value = recorded(DockerDaemonState, 'mtime=100\nstarted=200\nexecstart=/usr/sbin/dockerd -H fd://\n'
                     'args=/usr/sbin/dockerd -H fd:// \ninfo={"LoggingDriver": "local", "Swarm": {"a": 1}}\n')
    assert value == {"info": {"LoggingDriver": "local", "Swarm": {"a": 1}}, "mtime": 100, "started": 200,
                     "execstart": "/usr/sbin/dockerd -H fd://", "args": ["/usr/sbin/dockerd", "-H", "fd://"]}
    # the swarm state and the TLS step's runtime are read from the same answer
    assert SwarmInfo().process_data(value) == {"a": 1}
    assert DockerdRuntime().process_data(value) == {
        "execstart": "/usr/sbin/dockerd -H fd://", "args": ["/usr/sbin/dockerd", "-H", "fd://"], "started": 200}
    assert recorded(DockerDaemonState, "mtime=\ninfo=\n") == {
        "info": {}, "mtime": None, "started": None, "execstart": "", "args": []}


def test_failed_docker_unit_is_reset_before_the_start():
    run = run_deploy(install_docker, VMLAB, "node3",
                     {UnitActiveState: {"docker.socket": "inactive", "docker.service": "failed"}})
    assert run.op("docker units not in the failed state").commands == [
        "systemctl reset-failed docker.service"
    ]
    ok = run_deploy(install_docker, VMLAB, "node3",
                    {UnitActiveState: {"docker.socket": "active", "docker.service": "active"}})
    assert ok.op("docker units not in the failed state").commands == []


def test_docker_users_join_the_docker_group():
    run = run_deploy(install_docker, VMLAB, "node1", {DebArch: "amd64"})
    (cmd,) = [c for c in run.op("vagrant in the docker group").commands if "vagrant" in c
              and "docker" in c]
    assert "-G docker" in cmd


@pytest.mark.parametrize(("reported", "expected"), [
    ("debian-13", "the spec says distro ubuntu-24.04 but the host runs debian-13"),
    ("fedora-40", "unsupported OS"),
])
def test_wrong_distro_fails_before_any_change(reported, expected):
    run = run_deploy(install_docker, VMLAB, "node1", distro_key=reported)
    assert run.failed
    assert [o.short_name for o in run.ops] == ["Check the distro"]
    assert expected in run.errors[0]
