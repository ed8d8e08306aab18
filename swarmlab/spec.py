"""The lab spec: one YAML file, validated before any host is touched.

`load_spec(path)` returns a `LabSpec` or raises `SpecError` whose lines name the
field path (``nodes[2].ip``), the bad value and the fix.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmlab.distros import DISTROS, docker_plugin_gaps

HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
LABELS_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class SpecError(Exception):
    """A spec that cannot be used; `problems` holds one line per bad field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid lab spec\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Model):
    subnet: str
    gateway: str
    dns: list[str] = Field(default_factory=list)
    interface: str | None = None  # NIC that carries the lab address when none has it yet


class DockerSpec(_Model):
    source: Literal["auto", "official", "distro"] = "auto"
    version: str | None = None  # official repo pin: full apt version, e.g. "5:27.3.1-1~ubuntu.24.04~noble"
    log_driver: str = "json-file"
    log_opts: dict[str, str] = Field(default_factory=lambda: {"max-size": "10m", "max-file": "3"})
    daemon: dict[str, Any] = Field(default_factory=dict)  # extra daemon.json keys
    users: list[str] = Field(default_factory=list)  # added to the docker group
    tls: bool = False  # 2376/tcp with TLS; plaintext 2375 is never opened


class OverlaySpec(_Model):
    name: str
    subnet: str | None = None
    encrypted: bool = False
    attachable: bool = True
    labels: dict[str, str] = Field(default_factory=dict)


class SwarmSpec(_Model):
    enabled: bool = True
    data_path_port: int = 4789
    default_addr_pool: list[str] = Field(default_factory=list)
    default_addr_pool_mask_length: int = 24
    overlays: list[OverlaySpec] = Field(default_factory=list)


class RootlessSpec(_Model):
    users: list[str] = Field(default_factory=list)


class FirewallSpec(_Model):
    backend: Literal["auto", "ufw", "nftables", "none"] = "auto"
    ssh_port: int = 22


class NodeSpec(_Model):
    name: str
    distro: str
    ip: str
    role: Literal["manager", "worker"]
    labels: dict[str, str] = Field(default_factory=dict)
    interface: str | None = None
    box: str | None = None  # Vagrant box override
    cpus: int | None = Field(default=None, ge=1, le=64)
    memory: int | None = Field(default=None, ge=512, le=262144)  # MiB


class LabSpec(_Model):
    name: str
    network: NetworkSpec
    docker: DockerSpec = DockerSpec()
    swarm: SwarmSpec = SwarmSpec()
    rootless: RootlessSpec = RootlessSpec()
    firewall: FirewallSpec = FirewallSpec()
    nodes: list[NodeSpec]

    @property
    def managers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == "manager"]

    @property
    def workers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def first_manager(self) -> NodeSpec:
        return self.managers[0]

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.network.subnet).prefixlen

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def docker_source(self, node: NodeSpec) -> str:
        """The package source a node gets: `auto` means official on Ubuntu, distro elsewhere."""
        if self.docker.source != "auto":
            return self.docker.source
        return DISTROS[node.distro].default_docker_source

    def warnings(self) -> list[str]:
        """Problems the deploy will report per host (valid spec, but a host will fail)."""
        out = []
        for i, node in enumerate(self.nodes):
            gaps = docker_plugin_gaps(node.distro, self.docker_source(node))
            if gaps:
                out.append(
                    f"nodes[{i}] ({node.name}): {node.distro} packages lack {', '.join(gaps)}; "
                    "the docker deploy will fail this host. Fix: set docker.source: official"
                )
        return out


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _net(path: str, value: Any, problems: list[str]) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as e:
        problems.append(f"{path}: {value!r} is not a valid IPv4 network in CIDR form ({e})")
        return None


def _addr(path: str, value: Any, problems: list[str]) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        problems.append(f"{path}: {value!r} is not a valid IPv4 address")
        return None


def _port(path: str, value: int, problems: list[str]) -> None:
    if not 1 <= value <= 65535:
        problems.append(f"{path}: {value} is not a port (use 1-65535)")


def _check(spec: LabSpec) -> list[str]:
    """Cross-field rules pydantic's types cannot express."""
    p: list[str] = []
    if not HOSTNAME_RE.match(spec.name):
        p.append(f"name: {spec.name!r} must be lowercase letters, digits and '-' (max 63)")

    subnet = _net("network.subnet", spec.network.subnet, p)
    gateway = _addr("network.gateway", spec.network.gateway, p)
    for i, dns in enumerate(spec.network.dns):
        _addr(f"network.dns[{i}]", dns, p)
    reserved: dict[ipaddress.IPv4Address, str] = {}
    if subnet is not None:
        if subnet.prefixlen > 29:
            p.append(f"network.subnet: {subnet} is too small for a lab (use /29 or larger)")
        reserved = {subnet.network_address: "network", subnet.broadcast_address: "broadcast"}
        if gateway is not None:
            if gateway not in subnet:
                p.append(f"network.gateway: {gateway} is outside network.subnet {subnet}")
            elif gateway in reserved:
                p.append(f"network.gateway: {gateway} is the {reserved[gateway]} address")
            reserved[gateway] = "gateway"

    if not spec.nodes:
        p.append("nodes: the lab needs at least one node")
    names: dict[str, int] = {}
    ips: dict[ipaddress.IPv4Address, int] = {}
    for i, node in enumerate(spec.nodes):
        if not HOSTNAME_RE.match(node.name):
            p.append(
                f"nodes[{i}].name: {node.name!r} is not a valid hostname "
                "(lowercase letters, digits, '-', max 63, no leading/trailing '-')"
            )
        if node.name in names:
            p.append(f"nodes[{i}].name: {node.name!r} repeats nodes[{names[node.name]}].name")
        names.setdefault(node.name, i)
        if node.distro not in DISTROS:
            p.append(
                f"nodes[{i}].distro: {node.distro!r} is not supported "
                f"(use one of: {', '.join(sorted(DISTROS))})"
            )
        for key in node.labels:
            if not LABELS_KEY_RE.match(key):
                p.append(f"nodes[{i}].labels: key {key!r} is not a valid label key")
        ip = _addr(f"nodes[{i}].ip", node.ip, p)
        if ip is None:
            continue
        if subnet is not None and ip not in subnet:
            p.append(f"nodes[{i}].ip: {ip} is outside network.subnet {subnet}")
        elif ip in reserved:
            p.append(f"nodes[{i}].ip: {ip} is the {reserved[ip]} address of the lab subnet")
        if ip in ips:
            p.append(f"nodes[{i}].ip: {ip} repeats nodes[{ips[ip]}].ip")
        ips.setdefault(ip, i)

    managers = len(spec.managers)
    if spec.nodes and managers == 0:
        p.append("nodes: no node has role: manager (a swarm needs at least one)")
    elif managers % 2 == 0 and managers:
        p.append(
            f"nodes: {managers} managers is an even count; use an odd number (1, 3, 5) "
            "so the Raft quorum survives a failure"
        )

    if spec.docker.tls:
        p.append(
            "docker.tls: TLS for the Docker API (2376/tcp) is not supported yet; set it to false "
            "(the engine then listens on its unix socket only, never on plaintext 2375)"
        )
    _port("swarm.data_path_port", spec.swarm.data_path_port, p)
    if spec.swarm.data_path_port in (2377, 7946, spec.firewall.ssh_port):
        p.append(f"swarm.data_path_port: {spec.swarm.data_path_port} collides with a swarm/SSH port")
    _port("firewall.ssh_port", spec.firewall.ssh_port, p)
    if not 8 <= spec.swarm.default_addr_pool_mask_length <= 29:
        p.append(
            f"swarm.default_addr_pool_mask_length: {spec.swarm.default_addr_pool_mask_length} "
            "is out of range (use 8-29)"
        )

    taken: list[tuple[str, ipaddress.IPv4Network]] = []
    if subnet is not None:
        taken.append(("network.subnet", subnet))
    pools = [
        (f"swarm.default_addr_pool[{i}]", pool) for i, pool in enumerate(spec.swarm.default_addr_pool)
    ]
    overlays = [
        (f"swarm.overlays[{i}].subnet", o.subnet)
        for i, o in enumerate(spec.swarm.overlays)
        if o.subnet is not None
    ]
    for path, value in pools + overlays:
        net = _net(path, value, p)
        if net is None:
            continue
        for other_path, other in taken:
            if net.overlaps(other):
                p.append(f"{path}: {net} overlaps {other_path} {other}; pick a disjoint range")
        taken.append((path, net))

    seen_overlays: set[str] = set()
    for i, o in enumerate(spec.swarm.overlays):
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", o.name):
            p.append(f"swarm.overlays[{i}].name: {o.name!r} is not a valid network name")
        if o.name in ("ingress", "docker_gwbridge", "bridge", "host", "none"):
            p.append(f"swarm.overlays[{i}].name: {o.name!r} is reserved by Docker")
        if o.name in seen_overlays:
            p.append(f"swarm.overlays[{i}].name: {o.name!r} is listed twice")
        seen_overlays.add(o.name)

    for section, users in (("docker.users", spec.docker.users), ("rootless.users", spec.rootless.users)):
        for i, user in enumerate(users):
            if not USERNAME_RE.match(user) or user == "root":
                p.append(f"{section}[{i}]: {user!r} is not a valid non-root user name")
    return p


def parse_spec(text: str, source: str = "<spec>") -> LabSpec:
    """Parse and validate YAML text; raise SpecError listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise SpecError(source, [f"YAML syntax error at {where}: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise SpecError(source, [f"YAML error: {e}"]) from None
    if not isinstance(data, dict):
        raise SpecError(source, ["(top level): the spec must be a YAML mapping with name and nodes"])
    try:
        spec = LabSpec.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling"
            problems.append(f"{_loc(err['loc'])}: {msg}{shown}")
        raise SpecError(source, problems) from None
    problems = _check(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def load_spec(path: str | Path) -> LabSpec:
    """Read and validate a lab spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(str(path), [f"cannot read the spec: {e.strerror}"]) from None
    return parse_spec(text, str(path))
