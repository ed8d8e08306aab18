"""Start and stop the container lab's nodes: one systemd container per spec node."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from swarmlab.containerlab import docker_cli
from swarmlab.containerlab.cache import CACHE_CONTAINER, proxy_file
from swarmlab.containerlab.docker_cli import docker
from swarmlab.containerlab.image import NODE_USER, NodeImage
from swarmlab.model.distros import PLATFORM
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.model.state import lab_state_dir

LAB_LABEL = "swarmlab.lab"
NODE_LABEL = "swarmlab.node"

# What a systemd node with a nested dockerd needs: not the --privileged flag, but as much as
# it: every capability but SYS_RESOURCE, no seccomp or AppArmor confinement, access to every
# device, the host's cgroup tree. Root in a node is root on the Docker host (see
# docs/container-lab.md, "How the container lab is built"). Shared with the Vagrantfile's docker provider.
NODE_RUN_FLAGS = tuple(PLATFORM["node_run_flags"])
# `sh -c` scripts take paths and names as arguments ($1, $2), never formatted into the script
WRITE_STDIN = 'cat > "$1"'
INSTALL_KEYS = 'cat > "$1" && chown "$2:$2" "$1" && chmod 600 "$1"'


class ProviderError(RuntimeError):
    """The container lab cannot be brought up as asked."""


@dataclass(frozen=True)
class LabNames:
    """Docker object names for one lab."""

    lab: str

    @property
    def network(self) -> str:
        return f"swarmlab-{self.lab}"

    def container(self, node: str) -> str:
        return f"swarmlab-{self.lab}-{node}"

    def volume(self, node: str) -> str:
        return f"swarmlab-{self.lab}-{node}-docker"


def ssh_keypair(spec: LabSpec) -> Path:
    """The lab's SSH private key, generated on first use."""
    state = lab_state_dir(spec.name)
    key = state / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"swarmlab-{spec.name}",
             "-f", str(key)],
            check=True,
        )
    return key


def ensure_network(spec: LabSpec) -> bool:
    """Create the lab's bridge network on the spec subnet. True if created.

    Only networks and containers swarmlab labelled as its own are ever removed here: a
    same-named network of another owner, or one with containers attached that are not this
    lab's nodes, stops `up` with an error that says what is in the way.
    """
    names = LabNames(spec.name)
    existing = docker_cli.inspect(*docker("network", "ls", "-q").split())
    for net in existing:
        configs = (net.get("IPAM") or {}).get("Config") or []
        subnets = {c.get("Subnet") for c in configs}
        labels = net.get("Labels") or {}
        if net["Name"] == names.network:
            if spec.network.subnet in subnets and labels.get(LAB_LABEL) == spec.name:
                return False
            if labels.get(LAB_LABEL) != spec.name:
                raise ProviderError(
                    f"docker network {net['Name']} exists but swarmlab did not create it for lab "
                    f"{spec.name} (no {LAB_LABEL}={spec.name} label); remove it yourself "
                    "(docker network rm) or rename the lab"
                )
            _refuse_foreign_containers(spec, net)
            _remove_stale_network(net, f"its subnet {sorted(subnets)} differs from the spec")
        elif spec.network.subnet in subnets:
            other = labels.get(LAB_LABEL)
            users = [c.get("Name") for c in (net.get("Containers") or {}).values()]
            if other and set(users) <= {CACHE_CONTAINER} and \
                    not docker_cli.ids("container", f"{LAB_LABEL}={other}"):
                _remove_stale_network(net, f"lab {other} left it with no containers")
            else:
                owner = f" (lab {other}: `swarmlab down` with its spec removes it)" if other else ""
                raise ProviderError(
                    f"network.subnet {spec.network.subnet} is already used by docker network "
                    f"{net['Name']!r}{owner}. Fix: choose another network.subnet (and node IPs) "
                    f"in the spec, or remove that network: docker network rm {net['Name']}"
                )
    docker(
        "network", "create", "--driver", "bridge",
        "--subnet", spec.network.subnet, "--gateway", spec.network.gateway,
        "--label", f"{LAB_LABEL}={spec.name}",
        names.network,
    )
    return True


def _refuse_foreign_containers(spec: LabSpec, net: dict) -> None:
    """ProviderError when containers that are not this lab's nodes use the network."""
    ids = [cid for cid, info in (net.get("Containers") or {}).items()
           if info.get("Name") != CACHE_CONTAINER]
    foreign = [
        info["Name"].lstrip("/") for info in docker_cli.inspect(*ids)
        if ((info.get("Config") or {}).get("Labels") or {}).get(LAB_LABEL) != spec.name
    ]
    if foreign:
        raise ProviderError(
            f"docker network {net['Name']} has to be re-created for the spec's subnet, but "
            f"containers swarmlab does not own use it: {', '.join(sorted(foreign))}. "
            "Disconnect or remove them yourself, then run up again"
        )


def _remove_stale_network(net: dict, why: str) -> None:
    """Remove a network of this lab and its nodes (checked by the caller: nothing else)."""
    docker("network", "disconnect", "-f", net["Name"], CACHE_CONTAINER, check=False)
    for cid, info in (net.get("Containers") or {}).items():
        if info.get("Name") != CACHE_CONTAINER:
            docker("rm", "-f", cid, check=False)
    docker("network", "rm", net["Name"])
    print(f"removed docker network {net['Name']} ({why})")


def start_node(spec: LabSpec, node: NodeSpec, image: NodeImage) -> bool:
    """Run the node container unless it already runs from the same image. True if started."""
    names = LabNames(spec.name)
    name = names.container(node.name)
    if docker("ps", "-aq", "--filter", f"name=^{name}$").strip():
        info = docker_cli.inspect(name)[0]
        same = info["Config"]["Image"] == image.tag
        ip_ok = (
            info["NetworkSettings"]["Networks"].get(names.network, {}).get("IPAddress") == node.ip
        )
        if info["State"]["Running"] and same and ip_ok:
            return False
        if not info["State"]["Running"] and same and ip_ok:
            docker("start", name)
            return True
        owner = (info["Config"].get("Labels") or {}).get(LAB_LABEL)
        if owner != spec.name:
            raise ProviderError(
                f"container {name} exists but is not a node of lab {spec.name} (label "
                f"{LAB_LABEL}={owner}); swarmlab does not remove containers it does not own: "
                "remove or rename it yourself"
            )
        docker("rm", "-f", name)
    args = [
        "run", "-d", "--name", name, "--hostname", node.name,
        "--network", names.network, "--ip", node.ip,
        "--label", f"{LAB_LABEL}={spec.name}", "--label", f"{NODE_LABEL}={node.name}",
        *NODE_RUN_FLAGS,
        "-v", f"{names.volume(node.name)}:/var/lib/docker",
    ]
    if node.cpus:
        args += ["--cpus", str(node.cpus)]
    if node.memory:
        args += ["--memory", f"{node.memory}m"]
    docker("volume", "create", "--label", f"{LAB_LABEL}={spec.name}", names.volume(node.name))
    docker(*args, image.tag)
    return True


def wait_ready(spec: LabSpec, node: NodeSpec, pubkey: str, apt_proxy: str | None = None,
               timeout: float = 90.0) -> None:
    """Wait for systemd and sshd, authorize the lab key for the node user, point apt at the
    package cache (or remove that setting when the cache is off); non-apt nodes are left alone."""
    name = LabNames(spec.name).container(node.name)
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False).strip()
        if state in ("running", "degraded") and _port_open(node.ip, 22):
            break
        time.sleep(0.5)
    else:
        raise ProviderError(
            f"node {node.name}: not ready after {timeout:.0f}s (systemd state {state!r}); "
            f"see: docker logs {name}"
        )
    target = proxy_file(node.distro)
    if target and apt_proxy:
        docker("exec", "-i", name, "sh", "-c", WRITE_STDIN, "sh", target, input=apt_proxy)
    elif target:
        docker("exec", name, "rm", "-f", target)
    keys = f"/home/{NODE_USER}/.ssh/authorized_keys"
    docker("exec", "-i", name, "sh", "-c", INSTALL_KEYS, "sh", keys, NODE_USER, input=pubkey)


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def lab_containers(lab: str) -> list[dict]:
    return docker_cli.inspect(*docker_cli.ids("container", f"{LAB_LABEL}={lab}"))


def remove_lab(lab: str) -> dict[str, int]:
    """Remove the containers, network and volumes of one lab; counts of what went."""
    label = f"{LAB_LABEL}={lab}"
    containers = docker_cli.ids("container", label)
    if containers:
        docker("rm", "-f", "-v", *containers)
    networks = docker_cli.ids("network", label)
    for net in networks:
        docker("network", "disconnect", "-f", net, CACHE_CONTAINER, check=False)
        docker("network", "rm", net, check=False)
    volumes = docker_cli.ids("volume", label)
    if volumes:
        docker("volume", "rm", "-f", *volumes)
    return {"containers": len(containers), "networks": len(networks), "volumes": len(volumes)}


def ensure_engine() -> None:
    """ProviderError naming the fix when no Docker engine answers (docker_cli.engine_problem)."""
    if not docker_cli.engine_available():
        raise ProviderError(docker_cli.engine_problem() or "the Docker engine stopped answering")


