"""Per-distro differences as data: one table per concern, read by the deploys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import swarmlab

# Data shared with the Vagrantfile (Ruby reads the same file: node run flags, boxes, memory).
PLATFORM = json.loads((Path(swarmlab.__file__).parent / "data" / "platform.json").read_text())


@dataclass(frozen=True, kw_only=True)
class Distro:
    """What a supported distro is and how it is managed (one row of DISTROS, built by keyword)."""

    key: str  # spec name, e.g. "ubuntu-24.04"
    os_id: str  # /etc/os-release ID
    version_id: str = ""  # /etc/os-release VERSION_ID ("" for rolling)
    codename: str = ""  # VERSION_CODENAME; identifies Debian testing, whose os-release has no VERSION_ID
    family: str  # "apt" or "pacman"
    default_docker_source: str  # "official" or "distro"
    network_backend: str  # "netplan" or "networkmanager"
    firewall_backend: str  # firewall.backend "auto" resolves to this
    node_image_base: str  # how the container lab builds a node: "debootstrap:<suite>" or an image


def _ubuntu(version: str, codename: str) -> Distro:
    return Distro(key=f"ubuntu-{version}", os_id="ubuntu", version_id=version, codename=codename,
                  family="apt", default_docker_source="official", network_backend="netplan",
                  firewall_backend="ufw", node_image_base=f"ubuntu:{version}")


def _debian(version: str, codename: str) -> Distro:
    return Distro(key=f"debian-{version}", os_id="debian", version_id=version, codename=codename,
                  family="apt", default_docker_source="distro", network_backend="netplan",
                  firewall_backend="ufw", node_image_base=f"debootstrap:{codename}")


DISTROS: dict[str, Distro] = {
    d.key: d
    for d in (
        _ubuntu("22.04", "jammy"),
        _ubuntu("24.04", "noble"),
        _debian("12", "bookworm"),
        _debian("13", "trixie"),
        _debian("14", "forky"),
        Distro(key="manjaro", os_id="manjaro", family="pacman", default_docker_source="distro",
               network_backend="networkmanager", firewall_backend="nftables",
               node_image_base="manjarolinux/base"),
    )
}
APT_DISTROS = tuple(k for k, d in DISTROS.items() if d.family == "apt")


@dataclass(frozen=True)
class DockerPackages:
    """Packages that give Docker Engine + buildx + compose v2 from one source."""

    install: tuple[str, ...]
    remove_first: tuple[str, ...] = ()
    rootless: tuple[str, ...] = ()
    # plugin -> why it is missing, for releases that do not package it
    missing: dict[str, str] = field(default_factory=dict)


_OFFICIAL_APT = DockerPackages(
    install=("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin",
             "docker-compose-plugin"),
    remove_first=("docker.io", "docker-doc", "docker-compose", "docker-compose-v2",
                  "podman-docker", "containerd", "runc"),
    rootless=("docker-ce-rootless-extras", "uidmap", "dbus-user-session", "slirp4netns"),
)

# (distro, source) -> packages. A missing key means the combination does not exist.
DOCKER_PACKAGES: dict[tuple[str, str], DockerPackages] = {
    **{(key, "official"): _OFFICIAL_APT for key in APT_DISTROS},
    ("ubuntu-22.04", "distro"): DockerPackages(
        install=("docker.io", "docker-buildx", "docker-compose-v2"),
        rootless=("rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"),
    ),
    ("ubuntu-24.04", "distro"): DockerPackages(
        install=("docker.io", "docker-buildx", "docker-compose-v2"),
        rootless=("rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"),
    ),
    ("debian-12", "distro"): DockerPackages(
        install=("docker.io",),
        rootless=("rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"),
        missing={
            "buildx": "Debian 12 does not package docker-buildx",
            "compose v2": "Debian 12 only packages docker-compose v1 (python), not the v2 plugin",
        },
    ),
    ("debian-13", "distro"): DockerPackages(
        # Debian 13 split the CLI out of docker.io (only a Recommends there)
        install=("docker.io", "docker-cli", "docker-buildx", "docker-compose"),
        rootless=("rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"),
    ),
    ("debian-14", "distro"): DockerPackages(
        # docker.io 28.5.2: the CLI is its own package (a Recommends), compose v2 is docker-compose
        install=("docker.io", "docker-cli", "docker-buildx", "docker-compose"),
        rootless=("rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"),
    ),
    ("manjaro", "distro"): DockerPackages(
        install=("docker", "docker-buildx", "docker-compose"),
        rootless=("rootlesskit", "slirp4netns"),
    ),
}

# Docker's apt repository, per distro os_id.
DOCKER_APT_REPO = "https://download.docker.com/linux/{os_id}"
DOCKER_APT_KEY = "https://download.docker.com/linux/{os_id}/gpg"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.asc"

NETWORK_PACKAGES: dict[str, tuple[str, ...]] = {
    "netplan": ("netplan.io",),
    "networkmanager": ("networkmanager",),
}

@dataclass(frozen=True)
class NetworkBackend:
    """How a network backend gives a node its static lab address (names are the deploy's
    operation names)."""

    packages_step: str  # the package install step
    service: str  # the unit that applies the address
    service_step: str
    template: str  # templates/ file of the address
    path: str  # where it is written ({iface}: the lab NIC)
    file_step: str


NETWORK_BACKENDS: dict[str, NetworkBackend] = {
    "netplan": NetworkBackend(
        "netplan", "systemd-networkd.service", "systemd-networkd", "netplan.yaml.j2",
        "/etc/netplan/60-swarmlab.yaml", "netplan file for the lab address"),
    "networkmanager": NetworkBackend(
        "NetworkManager", "NetworkManager.service", "NetworkManager", "nm-keyfile.nmconnection.j2",
        "/etc/NetworkManager/system-connections/swarmlab-{iface}.nmconnection",
        "NetworkManager keyfile for the lab address"),
}

@dataclass(frozen=True, kw_only=True)
class PackageFamily:
    """How a package family installs (one row of PACKAGE_FAMILIES, keyed by Distro.family)."""

    step_suffix: str  # install steps are named after their kind of transaction
    # (template, destination) of a setting that makes every package call wait (bounded) for a
    # lock another process holds, written once before the first install; None: not needed
    lock_wait: tuple[str, str] | None = None


PACKAGE_FAMILIES: dict[str, PackageFamily] = {
    "apt": PackageFamily(step_suffix="",
                         lock_wait=("apt-lock-timeout.conf",
                                    "/etc/apt/apt.conf.d/90swarmlab-lock-timeout")),
    "pacman": PackageFamily(step_suffix=" (full sync)"),
}

FIREWALL_PACKAGES: dict[str, tuple[str, ...]] = {
    "ufw": ("ufw",),
    "nftables": ("nftables",),
    "none": (),
}


@dataclass(frozen=True)
class RootlessTools:
    """Where a Docker source puts Docker's rootless scripts (dockerd-rootless.sh, its setuptool)."""

    script_dir: str | None  # None: the source ships no dockerd-rootless.sh
    docker_beside: bool = True  # the docker CLI sits in script_dir (the setuptool runs $BIN/docker)
    rootlesskit: str = "/usr/bin/rootlesskit"
    missing: str = ""  # the fix when the scripts are not there


_ROOTLESS_OFFICIAL = RootlessTools("/usr/bin")  # docker-ce-rootless-extras
_ROOTLESS_DEBIAN = RootlessTools(
    # Debian's docker.io keeps both scripts in contrib/, away from the docker CLI
    "/usr/share/docker.io/contrib", docker_beside=False,
    missing="the docker.io package should ship them; reinstall docker.io",
)
_ROOTLESS_UBUNTU = RootlessTools(
    None,
    missing="Ubuntu's docker.io ships no dockerd-rootless.sh (only from 26.04). Fix: set "
    "docker.source: official (docker-ce-rootless-extras) or drop rootless.users",
)

# (distro, source) -> rootless scripts; keys as in DOCKER_PACKAGES.
ROOTLESS_TOOLS: dict[tuple[str, str], RootlessTools] = {
    **{(key, "official"): _ROOTLESS_OFFICIAL for key in APT_DISTROS},  # docker-ce-rootless-extras
    ("ubuntu-22.04", "distro"): _ROOTLESS_UBUNTU,
    ("ubuntu-24.04", "distro"): _ROOTLESS_UBUNTU,
    ("debian-12", "distro"): _ROOTLESS_DEBIAN,
    ("debian-13", "distro"): _ROOTLESS_DEBIAN,
    ("debian-14", "distro"): _ROOTLESS_DEBIAN,  # docker.io 28.5.2: same contrib/ directory
    ("manjaro", "distro"): RootlessTools(
        # rootlesskit and slirp4netns are in the repos; the docker package has no rootless
        # scripts (the AUR's docker-rootless-extras does). swarmlab writes the user unit itself.
        "/usr/bin",
        missing="Manjaro's docker package ships no dockerd-rootless.sh; it comes from the AUR "
        "package docker-rootless-extras, which swarmlab does not build. Fix: install it on the "
        "host, or drop rootless.users",
    ),
}

# Releases whose AppArmor restricts unprivileged user namespaces
# (kernel.apparmor_restrict_unprivileged_userns=1): rootlesskit needs a profile allowing userns.
ROOTLESS_APPARMOR: frozenset[str] = frozenset({"ubuntu-24.04"})

# Rootless overlay2 needs kernel 5.11+; older kernels use fuse-overlayfs (its package name).
ROOTLESS_NATIVE_OVERLAY_KERNEL = (5, 11)
FUSE_OVERLAYFS = "fuse-overlayfs"


def docker_plugin_gaps(distro: str, source: str) -> list[str]:
    """Plugins the distro/source pair cannot provide (empty when complete)."""
    pkgs = DOCKER_PACKAGES.get((distro, source))
    if pkgs is None:
        return [f"any Docker packages from source {source!r}"] if distro in DISTROS else []
    return sorted(pkgs.missing)


def distro_from_os_release(os_id: str, version_id: str, codename: str = "") -> Distro | None:
    """Map /etc/os-release ID, VERSION_ID and VERSION_CODENAME to a supported distro.

    Debian testing has no VERSION_ID (forky says only VERSION_CODENAME=forky): the codename
    decides there.
    """
    for d in DISTROS.values():
        if d.os_id != os_id.lower():
            continue
        if not d.version_id or d.version_id == version_id:
            return d
        if not version_id and d.codename and d.codename == codename.lower():
            return d
    return None


def rootless_tools(distro: str, source: str) -> RootlessTools | None:
    """Rootless scripts for a distro/source pair; None when the pair does not exist."""
    return ROOTLESS_TOOLS.get((distro, source))


def rootless_packages(distro: str, source: str, storage_driver: str | None) -> list[str]:
    """Packages a rootless daemon needs on this distro/source, plus its storage driver's."""
    pkgs = list(DOCKER_PACKAGES[(distro, source)].rootless)
    if storage_driver == "fuse-overlayfs":
        pkgs.append(FUSE_OVERLAYFS)
    return pkgs


# package family -> root shell that installs the tools `swarmlab trace` needs (tcpdump; the
# iptables package already brings xtables-monitor), only when they are missing
TRACE_TOOLS_INSTALL: dict[str, str] = {
    "apt": "command -v tcpdump >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
           "tcpdump >/dev/null 2>&1 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive "
           "apt-get install -y -qq tcpdump >/dev/null; }; echo installed; }",
    "pacman": "command -v tcpdump >/dev/null || { pacman -S --noconfirm --needed tcpdump >/dev/null; echo installed; }",
}
