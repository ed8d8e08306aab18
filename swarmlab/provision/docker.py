"""Docker Engine with the buildx and compose v2 plugins, from Docker's repository or the distro.

pyinfra's operations (apt.sources_file, files, systemd.service, server.user) except the restart
decided from the running daemon against daemon.json (`docker_uses_daemon_json`: pyinfra's
`systemd.service(restarted=...)` would need a flag from "a file changed in this run", which
misses a drift made outside the run) and the reset of failed units (pyinfra has none).
"""

from __future__ import annotations

from pyinfra import host, logger, state
from pyinfra.api import operation
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebArch
from pyinfra.facts.files import Directory, File
from pyinfra.operations import apt, files, server, systemd

from swarmlab.model.distros import (
    DOCKER_APT_KEY,
    DOCKER_APT_REPO,
    DOCKER_KEYRING,
    DOCKER_PACKAGES,
    PACKAGE_FAMILIES,
    Distro,
)
from swarmlab.model.spec import HARDENED_DAEMON, LabSpec, NodeSpec
from swarmlab.provision.context import lab_deploy, template
from swarmlab.provision.factcache import Request
from swarmlab.provision.facts import DockerDaemonState, UnitActiveState
from swarmlab.provision.ops import DOCKER_RESTART, fail, units_not_failed
from swarmlab.provision.packages import install_packages
from swarmlab.provision.prefetch import file_facts, register_facts, service_facts, user_facts

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_SOURCES_NAME = "docker"  # /etc/apt/sources.list.d/docker.sources
DOCKER_UNITS = ("docker.socket", "docker.service")


def daemon_config(spec: LabSpec) -> dict:
    """daemon.json content: log settings, live-restore off under swarm, extra spec keys."""
    cfg: dict = {"log-driver": spec.docker.log_driver}
    if spec.docker.log_opts:
        cfg["log-opts"] = dict(spec.docker.log_opts)
    if spec.swarm.enabled:
        cfg["live-restore"] = False  # not compatible with swarm mode
    if spec.security.profile == "hardened":
        cfg.update(HARDENED_DAEMON)
    cfg.update(spec.docker.daemon)
    return cfg


# daemon.json key -> the `docker info` field that shows what the running daemon uses
RUNNING_FIELDS: dict[str, str] = {
    "log-driver": "LoggingDriver",
    "live-restore": "LiveRestoreEnabled",
    "storage-driver": "Driver",
    "data-root": "DockerRootDir",
    "debug": "Debug",
    "default-runtime": "DefaultRuntime",
    "cgroup-driver": "CgroupDriver",
}


def running_drift(file_config: dict, daemon: dict) -> list[str]:
    """How the running dockerd differs from daemon.json ([] when it runs with it).

    `daemon` is the DockerDaemonState fact: `docker info`, daemon.json's mtime and the
    daemon's start time. A file written after the daemon started is drift even where
    `docker info` shows no field for the changed key.
    """
    info = daemon.get("info")
    if not info:
        return ["dockerd does not answer"]
    out = [
        f"{key}: dockerd runs with {info.get(field)!r}, daemon.json says {file_config[key]!r}"
        for key, field in RUNNING_FIELDS.items()
        if key in file_config and info.get(field) != file_config[key]
    ]
    mtime, started = daemon.get("mtime"), daemon.get("started")
    if mtime and started and mtime > started:
        out.append("daemon.json was written after dockerd started (restart docker to apply it)")
    return out


@operation()
def docker_uses_daemon_json(config: dict):
    """Restart docker when the running daemon differs from `config` (daemon.json's content)."""
    daemon = host.get_fact(DockerDaemonState)
    if not daemon.get("info"):
        host.noop("dockerd does not answer yet (not installed, or starting): nothing to compare")
        return
    drift = running_drift(config, daemon)
    if drift:
        if state.is_executing:
            logger.info(f"{host.print_prefix}restarting docker: {'; '.join(drift)}")
        yield from DOCKER_RESTART
    else:
        host.noop("dockerd runs with daemon.json")


def docker_facts(spec: LabSpec, node: NodeSpec) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    out: list[Request] = [(Directory, {"path": "/etc/docker"}), *file_facts(DAEMON_JSON),
                          (UnitActiveState, {"units": list(DOCKER_UNITS)}),
                          *service_facts("docker.service"), (DockerDaemonState, {})]
    for user in spec.docker.users:
        out += user_facts(f"/home/{user}")
    if spec.docker_source(node) == "official":  # Docker's repository, its key and the arch
        out += [(AptSources, {}), (DebArch, {}), (Directory, {"path": "/etc/apt/keyrings"}),
                (File, {"path": DOCKER_KEYRING})]
    return out


@lab_deploy("Docker Engine")
def install_docker(spec: LabSpec, node: NodeSpec, distro: Distro) -> None:
    source = spec.docker_source(node)
    pkgs = DOCKER_PACKAGES.get((distro.key, source))
    if pkgs is None or pkgs.missing:
        gaps = "; ".join(pkgs.missing.values()) if pkgs else f"no {source!r} packages"
        fail(
            name="Docker packages available",
            message=f"{host.name}: {distro.key} with docker.source={source} cannot give Docker "
            f"with buildx and compose v2: {gaps}. Fix: set docker.source: official in the spec "
            "(Docker's repository) — swarmlab never installs compose v1",
        )
        return

    files.directory(name="/etc/docker", path="/etc/docker", mode="0755")
    daemon_json(spec)

    if source == "official":
        _docker_apt_repo(distro)
    install_packages(
        "Docker packages" + PACKAGE_FAMILIES[distro.family].step_suffix,
        _pinned(pkgs.install, spec.docker.version),
        distro,
    )

    # a unit that hit its start limit (e.g. after a bad daemon.json) refuses a plain start
    units_not_failed(name="docker units not in the failed state", units=list(DOCKER_UNITS))
    systemd.service(
        name="docker service running and enabled",
        service="docker.service",
        running=True,
        enabled=True,
    )
    # decided from the running daemon, not from "the file changed in this run": another
    # operation (Lab packages) may have written it, or an earlier restart may have failed
    docker_uses_daemon_json(name="dockerd runs with daemon.json", config=daemon_config(spec))
    for user in spec.docker.users:
        server.user(name=f"{user} in the docker group", user=user, groups=["docker"], append=True)


def _pinned(packages: tuple[str, ...], version: str | None) -> list[str]:
    if not version:
        return list(packages)
    return [f"{p}={version}" if p in ("docker-ce", "docker-ce-cli") else p for p in packages]


def _docker_apt_repo(distro: Distro) -> None:
    pkgs = DOCKER_PACKAGES[(distro.key, "official")]
    install_packages("Repository prerequisites", ["ca-certificates", "curl"], distro)
    apt.packages(name="Remove conflicting packages", packages=list(pkgs.remove_first),
                 present=False)
    files.directory(name="/etc/apt/keyrings", path="/etc/apt/keyrings", mode="0755")
    files.download(
        name="Docker's signing key",
        src=DOCKER_APT_KEY.format(os_id=distro.os_id),
        dest=DOCKER_KEYRING,
        mode="0644",
    )
    arch = host.get_fact(DebArch) or "amd64"
    # pyinfra's deb822 source: written unless apt already lists this exact repository
    repo = apt.sources_file(
        name="Docker's apt repository",
        filename=DOCKER_SOURCES_NAME,
        uris=DOCKER_APT_REPO.format(os_id=distro.os_id),
        suites=distro.codename,
        components="stable",
        architectures=arch,
        signed_by=DOCKER_KEYRING,
    )
    apt.update(name="apt update for Docker's repository", _if=repo.did_change)


def daemon_json(spec: LabSpec):
    """/etc/docker/daemon.json from the template (the operation's meta)."""
    return files.template(
        name="daemon.json",
        src=template("daemon.json.j2"),
        dest=DAEMON_JSON,
        mode="0644",
        config=daemon_config(spec),
    )


register_facts(__name__, 40, lambda spec, node, distro: docker_facts(spec, node))
