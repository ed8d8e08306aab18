"""A lab-wide apt package cache for the container lab (apt-cacher-ng in its own container).

One cache container serves every container lab on this engine; its volume outlives labs, so
a second fresh lab does not download the same packages again. It joins each lab's network at
an address no spec node uses, and the nodes' apt sends plain-http fetches through it.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.docker_cli import docker
from swarmlab.containerlab.image import NodeImage, ensure_image
from swarmlab.control.progress import apt_stage, run_streamed
from swarmlab.model.distros import DISTROS
from swarmlab.model.spec import LabSpec

CACHE_CONTAINER = "swarmlab-apt-cache"
CACHE_VOLUME = "swarmlab-apt-cache"
CACHE_LABEL = "swarmlab.cache=1"
CACHE_PORT = 3142
APT_PROXY_FILE = "/etc/apt/apt.conf.d/00swarmlab-cache"
# package family -> the file that sends its downloads through the cache; apt-cacher-ng serves
# apt only, so pacman nodes (Manjaro) get nothing and fetch directly
PROXY_FILES: dict[str, str] = {"apt": APT_PROXY_FILE}
ACNG_ARGS = (
    "-c", "/etc/apt-cacher-ng", "ForeGround=1", "PidFile=/tmp/acng.pid",
    "SocketPath=/tmp/acng.socket", "LogDir=/tmp", "Port=3142",
)


def _silent(_: str) -> None:
    """Progress sink that says nothing."""


class CacheError(RuntimeError):
    """The package cache could not be started."""


def cache_image(log: Callable[[str], None] = _silent) -> str:
    """The cache image tag: the debian-13 node image plus apt-cacher-ng (built once)."""
    base = NodeImage("debian-13")
    tag = f"swarmlab/apt-cache:{base.content_hash}"
    if docker_cli.image_exists(tag):
        return tag
    ensure_image(base, log=log)  # a lab of other nodes (debian-12) has not built it
    log(f"package cache: building {tag} (apt-get install apt-cacher-ng)")
    builder = f"{CACHE_CONTAINER}-build"
    docker("rm", "-f", builder, check=False)
    try:
        built = run_streamed(
            ["docker", "run", "--name", builder, "--entrypoint", "sh", base.tag, "-c",
             "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
             "--no-install-recommends apt-cacher-ng && rm -rf /var/lib/apt/lists/*"],
            "package cache image", log, stage_of=apt_stage)
        if built.returncode != 0:
            raise CacheError("building the package cache image failed (apt-get install "
                             "apt-cacher-ng); --no-cache runs the lab without it:\n"
                             + "\n".join(built.tail[-15:]))
        docker("commit", builder, tag)
    finally:
        docker("rm", "-f", builder, check=False)
    return tag


def cache_address(spec: LabSpec) -> str:
    """The highest address of the lab subnet that no node and not the gateway uses."""
    net = ipaddress.ip_network(spec.network.subnet)
    taken = {spec.network.gateway, *(n.ip for n in spec.nodes)}
    for offset in range(2, net.num_addresses):
        addr = str(net.broadcast_address - (offset - 1))
        if addr not in taken and ipaddress.ip_address(addr) != net.network_address:
            return addr
    raise CacheError(f"network.subnet {spec.network.subnet} has no free address for the cache")


def ensure_cache(spec: LabSpec, network: str, log: Callable[[str], None] = _silent) -> str:
    """Run the cache container, attach it to the lab network; return the proxy URL."""
    start = time.monotonic()
    running = docker("ps", "-q", "--filter", f"name=^{CACHE_CONTAINER}$").strip()
    if not running:
        image = cache_image(log)
        log(f"package cache: starting container {CACHE_CONTAINER} (+{time.monotonic() - start:.1f}s)")
        docker("rm", "-f", CACHE_CONTAINER, check=False)
        docker("volume", "create", "--label", CACHE_LABEL, CACHE_VOLUME)
        docker(
            "run", "-d", "--name", CACHE_CONTAINER, "--label", CACHE_LABEL,
            "--restart", "unless-stopped", "--user", "apt-cacher-ng",
            "-v", f"{CACHE_VOLUME}:/var/cache/apt-cacher-ng",
            "--entrypoint", "/usr/sbin/apt-cacher-ng", image, *ACNG_ARGS,
        )
    ip = cache_address(spec)
    nets = docker_cli.inspect(CACHE_CONTAINER)[0]["NetworkSettings"]["Networks"]
    if network in nets and nets[network].get("IPAddress") != ip:
        docker("network", "disconnect", "-f", network, CACHE_CONTAINER)
        nets = {}
    if network not in nets:
        log(f"package cache: joining {network} at {ip} (+{time.monotonic() - start:.1f}s)")
        docker("network", "connect", "--ip", ip, network, CACHE_CONTAINER)
    _wait_listening()
    return f"http://{ip}:{CACHE_PORT}"


def _wait_listening(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = docker("exec", CACHE_CONTAINER, "python3", "-c",
                       f"import socket; socket.create_connection(('127.0.0.1', {CACHE_PORT}), 1); "
                       "print('up')", check=False)
        if "up" in probe:
            return
        time.sleep(0.3)
    raise CacheError(f"the package cache did not start; see: docker logs {CACHE_CONTAINER}")


def proxy_file(distro: str) -> str | None:
    """Where a node of this distro is pointed at the cache; None: its packages skip the cache."""
    return PROXY_FILES.get(DISTROS[distro].family)


def lab_uses_cache(spec: LabSpec) -> bool:
    """True when some node's package manager can fetch through the cache."""
    return any(proxy_file(n.distro) for n in spec.nodes)


def proxy_config(url: str) -> str:
    """apt configuration that sends plain-http fetches through the cache (https goes direct)."""
    return f'Acquire::http::Proxy "{url}";\n'


def cache_users(exclude: tuple[str, ...] = ()) -> list[str]:
    """Labs (other than `exclude`) with node containers on this engine, running or stopped:
    their nodes' apt is pointed at the cache."""
    labs = set()
    for info in docker_cli.inspect(*docker_cli.ids("container", "swarmlab.lab")):
        lab = ((info.get("Config") or {}).get("Labels") or {}).get("swarmlab.lab")
        if lab and lab not in exclude:
            labs.add(lab)
    return sorted(labs)


def remove_cache(force: bool = False, exclude: tuple[str, ...] = ()) -> None:
    """Remove the cache container and its volume (`swarmlab cache-clear`).

    Refused (CacheError) while another lab has nodes, unless `force`: their apt goes
    through the cache and would fail until the next `swarmlab up`.
    """
    users = cache_users(exclude)
    if users and not force:
        raise CacheError(
            f"the package cache serves lab(s) {', '.join(users)}: their nodes' apt would fail "
            "without it. Run `swarmlab down` for them first, or pass --force"
        )
    docker("rm", "-f", CACHE_CONTAINER, check=False)
    docker("volume", "rm", "-f", CACHE_VOLUME, check=False)
