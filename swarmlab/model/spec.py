"""The lab spec: one YAML file, validated before any host is touched.

`load_spec(path)` returns a `LabSpec` or raises `SpecError` whose lines name the
field path (``nodes[2].ip``), the bad value (shortened) and the fix. Every value that can
reach a shell on a node is held to a strict format here; the deploys quote them as well.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmlab.model.distros import DISTROS, docker_plugin_gaps

# --- limits and formats -------------------------------------------------------------------

MAX_SPEC_BYTES = 128 * 1024  # a 100-node spec is ~10 KiB
MAX_DEPTH = 12  # mappings/sequences nested in the YAML (the spec itself needs 5)
SHOW_MAX = 200  # longest value quoted back in an error line

# full-string formats (always used with re.fullmatch: `$` would let a trailing newline pass)
HOSTNAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
USERNAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Docker label keys: alphanumeric at both ends, inside also . _ / - (no '=', no whitespace)
LABELS_KEY_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?")
LABEL_VALUE_MAX = 255
RESERVED_LABEL_PREFIXES = ("com.docker.", "io.docker.", "org.dockerproject.")
NETWORK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# kernel: shorter than IFNAMSIZ (16), no '/', ':' or whitespace; here also no shell characters
INTERFACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
# Debian package version: [epoch:]upstream[-revision]
PACKAGE_VERSION_RE = re.compile(r"([0-9]{1,5}:)?[0-9][A-Za-z0-9.+~-]{0,99}")
LOG_DRIVER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:-]{0,99}")
BOX_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# accounts that ship with the distros (or are Docker's group): never a lab user
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "_apt",
    "messagebus", "sshd", "syslog", "uuidd", "polkitd", "tss", "avahi", "dnsmasq", "tcpdump",
    "landscape", "lxd", "pollinate", "usbmux", "dhcpcd", "http", "ftp", "git", "docker",
    "adm", "sudo", "wheel", "shadow", "utmp", "tty", "disk", "kmem", "staff", "users",
})
SYSTEM_ACCOUNT_PREFIXES = ("systemd-",)

SWARM_PORTS = {2377: "swarm cluster management", 7946: "swarm node gossip"}
DATA_PATH_PORT_RANGE = (1024, 49151)  # what `docker swarm init --data-path-port` accepts
LAB_PREFIX_RANGE = (16, 29)
OVERLAY_PREFIX_RANGE = (16, 29)
POOL_MIN_PREFIX = 8

# Docker's own address ranges (warned about when a lab range overlaps them)
DOCKER0 = ipaddress.IPv4Network("172.17.0.0/16")
SWARM_DEFAULT_POOL = ipaddress.IPv4Network("10.0.0.0/8")
SWARM_INGRESS = ipaddress.IPv4Network("10.0.0.0/24")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

Port = Annotated[int, Field(ge=1, le=65535)]


class SpecError(Exception):
    """A spec that cannot be used; `problems` holds one line per bad field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid lab spec\n" + "\n".join(f"  - {p}" for p in problems))


def show(value: Any) -> str:
    """`repr(value)` cut to SHOW_MAX characters (error lines stay short for any input)."""
    text = repr(value)
    if len(text) <= SHOW_MAX:
        return text
    return text[: SHOW_MAX - 20] + f"...' ({len(str(value))} chars)"


class _Model(BaseModel):
    # strict: a YAML `true` is not a port, "4789" is not a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _f(description: str, *examples: Any, **kw: Any) -> Any:
    """A spec field: its description and examples feed the JSON Schema and docs/spec.md."""
    return Field(description=description, examples=list(examples), **kw)


class NetworkSpec(_Model):
    """The lab network: every node gets a static address in it."""

    subnet: str = _f("The lab subnet, canonical IPv4 CIDR (/16 to /29); room for the nodes, "
                     "the gateway and the container lab's package cache.", "10.77.0.0/24")
    gateway: str = _f("The default gateway inside the subnet (not its network or broadcast "
                      "address).", "10.77.0.1")
    dns: list[str] = _f("DNS servers written into each node's network configuration "
                        "(at most 8; loopback allowed).", ["1.1.1.1", "9.9.9.9"], ["127.0.0.11"],
                        default_factory=list, max_length=8)
    interface: str | None = _f("The NIC that carries the lab address when none has it yet "
                               "(a node's own `interface` wins).", "eth0", "eth1", default=None)


class DockerSpec(_Model):
    """Docker Engine on every node: where it comes from and how dockerd runs."""

    source: Literal["auto", "official", "distro"] = _f(
        "Package source: `official` (Docker's repository), `distro` (the distribution's "
        "packages) or `auto` (official on Ubuntu, the distro's elsewhere).", "distro", "official",
        default="auto")
    version: str | None = _f("Pin of the official repository's packages: the full apt version "
                             "(from `apt-cache madison docker-ce`).",
                             "5:27.3.1-1~ubuntu.24.04~noble", default=None)
    log_driver: str = _f("dockerd's default log driver.", "json-file", "local",
                         default="json-file")
    log_opts: dict[str, str] = _f("Options of the log driver (daemon.json `log-opts`).",
                                  {"max-size": "10m", "max-file": "3"},
                                  default_factory=lambda: {"max-size": "10m", "max-file": "3"},
                                  max_length=32)
    daemon: dict[str, Any] = _f("Extra daemon.json keys (JSON values; not `hosts`, "
                                "`live-restore: true` under swarm, `iptables: false`).",
                                {"default-address-pools": [{"base": "172.30.0.0/16", "size": 24}]},
                                default_factory=dict, max_length=64)
    users: list[str] = _f("Users added to the docker group on every node.", ["lab"],
                          default_factory=list, max_length=64)
    tls: bool = _f("Also serve the Docker API on tcp://LAB_IP:2376 with --tlsverify and a lab "
                   "CA (plaintext 2375 is never opened).", True, default=False)


class OverlaySpec(_Model):
    """An overlay network the swarm creates."""

    name: str = _f("Docker network name (not ingress, docker_gwbridge, bridge, host, none).",
                   "labnet")
    subnet: str | None = _f("Its IPv4 CIDR (/16 to /29), disjoint from the lab subnet; "
                            "none: Docker picks one from the address pool.", "10.30.0.0/24",
                            default=None)
    encrypted: bool = _f("IPsec encryption of the data path between nodes.", True, default=False)
    attachable: bool = _f("Standalone containers may join it (`docker run --network`).", False,
                          default=True)
    labels: dict[str, str] = _f("Docker labels of the network.", {"purpose": "lab"},
                                default_factory=dict, max_length=64)


class SwarmSpec(_Model):
    """The swarm: its options and overlays."""

    enabled: bool = _f("Form the swarm; false: Docker Engine only.", False, default=True)
    data_path_port: int = _f("UDP port of the VXLAN data path (Docker accepts 1024-49151).", 4789,
                             default=4789)
    default_addr_pool: list[str] = _f("Address pools overlays get their subnets from (CIDR); "
                                      "none: Docker's 10.0.0.0/8.", ["10.20.0.0/16"],
                                      default_factory=list, max_length=16)
    default_addr_pool_mask_length: int = _f("Prefix length of each overlay subnet cut from the "
                                            "pools (8-29).", 24, default=24)
    overlays: list[OverlaySpec] = _f("Overlay networks the swarm creates.",
                                     [{"name": "labnet", "subnet": "10.30.0.0/24"}],
                                     default_factory=list, max_length=32)
    autolock: bool = _f("Managers locked at rest; the unlock key is kept in the lab's state "
                        "directory (`swarm-unlock-key`).", True, default=False)
    rotate_unlock_key: bool = _f("Rotate the unlock key on this run (not idempotent; needs "
                                 "`autolock`).", True, default=False)
    cert_expiry: str | None = _f("Node certificate validity, a duration of at least 1h.",
                                 "720h", "2160h", default=None)
    dispatcher_heartbeat: str | None = _f("Heartbeat period of the dispatcher, a duration.", "5s",
                                          default=None)
    task_history_limit: int | None = _f("Tasks kept per service slot (0-1000).", 3,
                                        default=None, ge=0, le=1000)
    data_path_addr: str | None = _f("Interface for the data path (set at init/join only).", "eth1",
                                    default=None)


class SecuritySpec(_Model):
    """How strictly the daemon is configured and checked (CIS Docker Benchmark)."""

    profile: Literal["lab", "hardened"] = _f(
        "`hardened` sets the CIS daemon options (icc off, no-new-privileges, no userland "
        "proxy) and needs `swarm.autolock` and encrypted overlays; `lab` reports them as lab "
        "choices.", "hardened", default="lab")


class RootlessSpec(_Model):
    """Rootless Docker daemons beside the rootful one."""

    users: list[str] = _f("Users who each get a rootless daemon (outside the swarm); a user "
                          "removed from the list is uninstalled.", ["alice"],
                          default_factory=list, max_length=64)


class FirewallSpec(_Model):
    """The host firewall that opens the swarm ports to the lab subnet only."""

    backend: Literal["auto", "ufw", "nftables", "none"] = _f(
        "`auto`: ufw on Ubuntu/Debian, nftables on Manjaro; `none` leaves the firewall alone.",
        "ufw", default="auto")
    ssh_port: int = _f("SSH port the firewall keeps open.", 22, 2222, default=22)


class NodeSpec(_Model):
    """One machine of the lab."""

    name: str = _f("Hostname of the node (lowercase letters, digits, '-').", "node1")
    distro: str = _f("Distribution: one of " + ", ".join(sorted(DISTROS)) + ".", "debian-13",
                     "ubuntu-24.04", json_schema_extra={"enum": sorted(DISTROS)})
    ip: str = _f("Its static lab address, inside `network.subnet`.", "10.77.0.11")
    role: Literal["manager", "worker"] = _f("Swarm role; the lab needs an odd number of "
                                            "managers.", "manager")
    labels: dict[str, str] = _f("Swarm node labels (Docker label keys).", {"zone": "a"},
                                default_factory=dict, max_length=64)
    interface: str | None = _f("This node's lab NIC (overrides `network.interface`).", "enp0s8",
                               default=None)
    box: str | None = _f("Vagrant box override (owner/name).", "bento/ubuntu-24.04", default=None)
    cpus: int | None = _f("Vagrant VM CPUs (1-64).", 2, default=None, ge=1, le=64)
    memory: int | None = _f("Vagrant VM memory in MiB (512-262144).", 2048, default=None, ge=512,
                            le=262144)


class LabSpec(_Model):
    """A swarmlab lab spec: the single source of truth for one lab."""

    name: str = _f("Lab name (a hostname): names the lab's Docker objects and state directory.",
                   "local")
    network: NetworkSpec = _f("The lab network.", {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1",
                                                    "interface": "eth0"})
    docker: DockerSpec = _f("Docker Engine.", {"source": "distro", "users": ["lab"]},
                            default=DockerSpec())
    swarm: SwarmSpec = _f("The swarm.", {"default_addr_pool": ["10.20.0.0/16"]},
                          default=SwarmSpec())
    rootless: RootlessSpec = _f("Rootless Docker users.", {"users": ["alice"]},
                                default=RootlessSpec())
    firewall: FirewallSpec = _f("The host firewall.", {"backend": "auto"}, default=FirewallSpec())
    security: SecuritySpec = _f("Security profile.", {"profile": "hardened"},
                                default=SecuritySpec())
    nodes: list[NodeSpec] = _f("The machines (at most 100).",
                               [{"name": "node1", "distro": "debian-13", "ip": "10.77.0.11",
                                 "role": "manager"}], max_length=100)

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
        """Problems the deploy will report per host, and ranges Docker also uses (valid spec)."""
        out = []
        for i, node in enumerate(self.nodes):
            gaps = docker_plugin_gaps(node.distro, self.docker_source(node))
            if gaps:
                out.append(
                    f"nodes[{i}] ({node.name}): {node.distro} packages lack {', '.join(gaps)}; "
                    "the docker deploy will fail this host. Fix: set docker.source: official"
                )
        if self.docker.version and all(self.docker_source(n) != "official" for n in self.nodes):
            out.append(f"docker.version: {show(self.docker.version)} pins only Docker's "
                       "repository packages and no node installs from it (docker.source); "
                       "it has no effect")
        return out + self._docker_range_warnings()

    def _docker_range_warnings(self) -> list[str]:
        ranges = [("network.subnet", self.network.subnet)]
        ranges += [(f"swarm.overlays[{i}].subnet", o.subnet)
                   for i, o in enumerate(self.swarm.overlays) if o.subnet]
        ranges += [(f"swarm.default_addr_pool[{i}]", p)
                   for i, p in enumerate(self.swarm.default_addr_pool)]
        out = []
        for path, value in ranges:
            net = ipaddress.IPv4Network(value)
            if net.overlaps(DOCKER0):
                out.append(f"{path}: {net} overlaps docker0's default {DOCKER0} on every node; "
                           "containers on the default bridge and this range may not reach "
                           "each other. Fix: pick another range")
            if self.swarm.default_addr_pool or not self.swarm.enabled or \
                    path.startswith("swarm.default_addr_pool"):
                continue
            if net.overlaps(SWARM_INGRESS):
                out.append(f"{path}: {net} overlaps the swarm ingress network {SWARM_INGRESS} "
                           "(Docker's default); set swarm.default_addr_pool to another range")
            elif net.overlaps(SWARM_DEFAULT_POOL) and path == "network.subnet":
                out.append(f"{path}: {net} lies in Docker's default swarm address pool "
                           f"{SWARM_DEFAULT_POOL}: an overlay may get this range. "
                           "Fix: set swarm.default_addr_pool (e.g. [10.20.0.0/16])")
        return out


# --- reading the file ---------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (YAML keeps the last one silently)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    self.duplicates.append(
                        f"duplicate key {show(key)} at line {line} (first at line {seen[key]}); "
                        "YAML would keep only the last one: remove one of them"
                    )
                else:
                    seen[key] = line
            except TypeError:  # unhashable: the constructor reports it
                pass
        return super().construct_mapping(node, deep=deep)


def _yaml_structure(text: str) -> list[str]:
    """Aliases and nesting depth, from the event stream (nothing is built or expanded)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1
            return [f"YAML alias *{event.anchor} at line {line}: aliases are not accepted in a "
                    "lab spec (they can expand without bound); write the value out"]
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                return [f"YAML nested deeper than {MAX_DEPTH} levels at line {line}: "
                        "a lab spec needs 5 at most"]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return []


def _load_yaml(text: str, source: str) -> Any:
    try:
        problems = _yaml_structure(text)
        if problems:
            raise SpecError(source, problems)
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise SpecError(source, [f"YAML syntax error at {where}: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise SpecError(source, [f"YAML error: {str(e)[:SHOW_MAX]}"]) from None
    if loader.duplicates:
        raise SpecError(source, loader.duplicates)
    return data


# --- checks -------------------------------------------------------------------------------

def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", part):
            out += ("." if out else "") + part
        else:
            out += f"[{show(part)}]"
    return out or "(top level)"


def _walk(value: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (location, string) in the raw data, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield loc, key
            yield from _walk(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*loc, i))
    elif isinstance(value, str):
        yield loc, value


def _control_characters(data: Any) -> list[str]:
    """Strings holding control characters (a newline, NUL, escape...) anywhere in the spec."""
    out = []
    for loc, text in _walk(data):
        m = CONTROL_RE.search(text)
        if m:
            out.append(f"{_loc(loc)}: {show(text)} contains a control character "
                       f"({m.group()!r}); remove it")
    return out


def _special_range(net: ipaddress.IPv4Network) -> str | None:
    """Why a range cannot be a lab range (loopback, multicast...), or None."""
    for kind, test in (
        ("loopback", net.is_loopback),
        ("multicast", net.is_multicast),
        ("link-local", net.is_link_local),
        ("reserved", net.is_reserved),
        ("'this network' (0.0.0.0/8)", net.subnet_of(THIS_NETWORK) or net.overlaps(THIS_NETWORK)),
    ):
        if test:
            return kind
    for special, kind in ((ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
                          (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
                          (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
                          (ipaddress.IPv4Network("240.0.0.0/4"), "reserved")):
        if net.overlaps(special):
            return f"{kind} ({special})"
    return None


def _net(path: str, value: Any, problems: list[str],
         prefixes: tuple[int, int] | None = None) -> ipaddress.IPv4Network | None:
    """A canonical IPv4 CIDR network outside the special ranges, within `prefixes`."""
    try:
        net = ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as e:
        problems.append(f"{path}: {show(value)} is not a valid IPv4 network in CIDR form "
                        f"({str(e)[:SHOW_MAX]})")
        return None
    if str(net) != value:
        problems.append(f"{path}: {show(value)} is not in CIDR form; write it as {net}")
        return None
    kind = _special_range(net)
    if kind:
        problems.append(f"{path}: {net} is a {kind} range; use a private range "
                        "(10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
        return None
    if prefixes and not prefixes[0] <= net.prefixlen <= prefixes[1]:
        lo, hi = prefixes
        if net.prefixlen < lo:
            problems.append(f"{path}: {net} is too wide (use /{lo} or narrower)")
        else:
            problems.append(f"{path}: {net} is too small for a lab (use /{hi} or larger)")
        return None
    return net


def _addr(path: str, value: Any, problems: list[str],
          allow_loopback: bool = False) -> ipaddress.IPv4Address | None:
    try:
        addr = ipaddress.IPv4Address(str(value))
    except ValueError:
        problems.append(f"{path}: {show(value)} is not a valid IPv4 address")
        return None
    if str(addr) != value:
        problems.append(f"{path}: {show(value)} is not a plain IPv4 address; write it as {addr}")
        return None
    for kind, bad in (("unspecified", addr.is_unspecified), ("multicast", addr.is_multicast),
                      ("reserved", addr.is_reserved),
                      ("loopback", addr.is_loopback and not allow_loopback)):
        if bad:
            problems.append(f"{path}: {addr} is a {kind} address")
            return None
    return addr


def _port(path: str, value: int, problems: list[str]) -> None:
    if not 1 <= value <= 65535:
        problems.append(f"{path}: {value} is not a port (use 1-65535)")


def _label_problems(path: str, labels: dict[str, str], problems: list[str]) -> None:
    for key, value in labels.items():
        if not LABELS_KEY_RE.fullmatch(key):
            problems.append(
                f"{path}: key {show(key)} is not a valid label key (letters, digits, '.', '_', "
                "'/', '-'; a letter or digit at both ends; at most 128 characters)"
            )
        elif key.startswith(RESERVED_LABEL_PREFIXES):
            problems.append(f"{path}: key {show(key)} is in a namespace Docker reserves "
                            f"({', '.join(RESERVED_LABEL_PREFIXES)})")
        if len(value) > LABEL_VALUE_MAX:
            problems.append(f"{path}.{key}: value {show(value)} is longer than "
                            f"{LABEL_VALUE_MAX} characters")


def _interface(path: str, value: str | None, problems: list[str]) -> None:
    if value is not None and (not INTERFACE_RE.fullmatch(value) or value in (".", "..")):
        problems.append(
            f"{path}: {show(value)} is not an interface name (1-15 letters, digits, "
            "'_', '.', '-'; no '/', ':', whitespace or shell characters)"
        )


def _user_problems(section: str, users: list[str], problems: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, user in enumerate(users):
        if not USERNAME_RE.fullmatch(user) or user == "root":
            problems.append(f"{section}[{i}]: {show(user)} is not a valid non-root user name "
                            "(lowercase letter or '_', then letters, digits, '_', '-'; max 32)")
        elif user in SYSTEM_ACCOUNTS or user.startswith(SYSTEM_ACCOUNT_PREFIXES):
            problems.append(f"{section}[{i}]: {show(user)} is a system account or group; "
                            "use a user of your own")
        if user in seen:
            problems.append(f"{section}[{i}]: {show(user)} repeats {section}[{seen[user]}]")
        seen.setdefault(user, i)


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why `value` cannot go into daemon.json, or None."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number"
    if isinstance(value, list):
        return next((p for v in value if (p := _json_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"key {show(k)} is not a string"
            p = _json_problem(v, depth + 1)
            if p:
                return p
        return None
    return f"{show(value)} ({type(value).__name__}) is not a JSON value"


def _daemon_problems(spec: LabSpec, problems: list[str]) -> None:
    daemon = spec.docker.daemon
    for key, value in daemon.items():
        bad = _json_problem(value)
        if bad:
            problems.append(f"docker.daemon.{key}: {bad}; daemon.json takes JSON values only")
    hosts = daemon.get("hosts")
    if hosts is not None:
        entries = hosts if isinstance(hosts, list) else [hosts]
        tcp = [h for h in entries if isinstance(h, str) and h.startswith("tcp://")]
        if tcp and daemon.get("tlsverify") is not True:
            why = (f"{show(tcp[0])} opens the Docker API (root on the node) to the network "
                   "without TLS")
        else:
            why = ("the docker.service unit already passes -H fd:// and dockerd refuses to start "
                   "with hosts in both places")
        problems.append(f"docker.daemon.hosts: {why}; remove it (use `docker context` over SSH "
                        "for remote access)")
    if spec.swarm.enabled and daemon.get("live-restore") is True:
        problems.append("docker.daemon.live-restore: true is incompatible with swarm mode "
                        "(dockerd exits at start); remove it or set swarm.enabled: false")
    for key, why in (("iptables", "Docker then writes no NAT/filter rules: published ports, "
                                  "the routing mesh and the DOCKER-USER firewall hook break"),
                     ("ip-forward", "containers and overlays lose their routing")):
        if daemon.get(key) is False:
            problems.append(f"docker.daemon.{key}: false breaks the lab ({why}); remove it")
    for key, field in (("log-driver", "docker.log_driver"), ("log-opts", "docker.log_opts")):
        if key in daemon:
            problems.append(f"docker.daemon.{key}: set {field} instead (one place for it)")


def _check(spec: LabSpec) -> list[str]:
    """Cross-field rules pydantic's types cannot express."""
    p: list[str] = []
    if not HOSTNAME_RE.fullmatch(spec.name):
        p.append(f"name: {show(spec.name)} must be lowercase letters, digits and '-' (max 63, "
                 "no leading/trailing '-'): it names hosts' lab and Docker objects")

    subnet = _net("network.subnet", spec.network.subnet, p, LAB_PREFIX_RANGE)
    gateway = _addr("network.gateway", spec.network.gateway, p)
    for i, dns in enumerate(spec.network.dns):
        _addr(f"network.dns[{i}]", dns, p, allow_loopback=True)
    _interface("network.interface", spec.network.interface, p)
    reserved: dict[ipaddress.IPv4Address, str] = {}
    if subnet is not None:
        reserved = {subnet.network_address: "network", subnet.broadcast_address: "broadcast"}
        if gateway is not None:
            if gateway not in subnet:
                p.append(f"network.gateway: {gateway} is outside network.subnet {subnet}")
            elif gateway in reserved:
                p.append(f"network.gateway: {gateway} is the {reserved[gateway]} address")
            reserved[gateway] = "gateway"
        # nodes + gateway + the container lab's package cache
        needed = len(spec.nodes) + 2
        if 0 < subnet.num_addresses - 2 < needed:
            p.append(f"network.subnet: {subnet} has {subnet.num_addresses - 2} host addresses; "
                     f"{len(spec.nodes)} nodes, the gateway and the package cache need {needed} "
                     "(use a larger subnet)")

    _node_problems(spec, subnet, reserved, p)

    if spec.docker.version is not None and not PACKAGE_VERSION_RE.fullmatch(spec.docker.version):
        p.append(f"docker.version: {show(spec.docker.version)} is not a package version "
                 "(e.g. 5:27.3.1-1~ubuntu.24.04~noble, from `apt-cache madison docker-ce`)")
    if not LOG_DRIVER_RE.fullmatch(spec.docker.log_driver):
        p.append(f"docker.log_driver: {show(spec.docker.log_driver)} is not a log driver name")
    _daemon_problems(spec, p)
    _port_problems(spec, p)
    _range_problems(spec, subnet, p)
    _overlay_problems(spec, p)
    _user_problems("docker.users", spec.docker.users, p)
    _user_problems("rootless.users", spec.rootless.users, p)
    _swarm_option_problems(spec, p)
    _security_problems(spec, p)
    return p


DURATION_RE = re.compile(r"(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?")
MIN_CERT_EXPIRY_S = 3600  # Docker refuses a node certificate validity under one hour


def duration_seconds(text: str) -> int | None:
    """Seconds of a Go-style duration of hours/minutes/seconds ("2160h", "1h30m", "5s")."""
    m = DURATION_RE.fullmatch(text)
    if not m or not text:
        return None
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def _swarm_option_problems(spec: LabSpec, p: list[str]) -> None:
    sw = spec.swarm
    for field, value, low in (("cert_expiry", sw.cert_expiry, MIN_CERT_EXPIRY_S),
                              ("dispatcher_heartbeat", sw.dispatcher_heartbeat, 1)):
        if value is None:
            continue
        secs = duration_seconds(value)
        if secs is None:
            p.append(f"swarm.{field}: {show(value)} is not a duration (hours, minutes, seconds: "
                     "e.g. 2160h, 1h30m, 5s)")
        elif secs < low:
            p.append(f"swarm.{field}: {show(value)} is shorter than {low} s")
    _interface("swarm.data_path_addr", sw.data_path_addr, p)
    if not sw.enabled and (sw.autolock or sw.rotate_unlock_key):
        p.append("swarm.autolock: needs swarm.enabled: true")
    if sw.rotate_unlock_key and not sw.autolock:
        p.append("swarm.rotate_unlock_key: true needs swarm.autolock: true (no key to rotate)")


# daemon.json options the `hardened` profile sets (CIS Docker Benchmark 1.6.0, section 2)
HARDENED_DAEMON: dict[str, Any] = {
    "icc": False, "no-new-privileges": True, "userland-proxy": False,  # 2.2, 2.14, 2.16
    "userns-remap": "default",  # 2.9: containers' root is an unprivileged host user (dockremap)
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 8192, "Soft": 1024}},  # 2.8
}


def _security_problems(spec: LabSpec, p: list[str]) -> None:
    if spec.security.profile != "hardened":
        return
    for key, want in HARDENED_DAEMON.items():
        if key in spec.docker.daemon and spec.docker.daemon[key] != want:
            p.append(f"docker.daemon.{key}: {show(spec.docker.daemon[key])} contradicts "
                     f"security.profile: hardened (which sets {key}: {want}); remove it")
    if spec.swarm.enabled and not spec.swarm.autolock:
        p.append("security.profile: hardened needs swarm.autolock: true (CIS 7.5)")
    for i, o in enumerate(spec.swarm.overlays):
        if not o.encrypted:
            p.append(f"swarm.overlays[{i}].encrypted: false under security.profile: hardened "
                     "(CIS 7.3); set it to true")


def _node_problems(spec: LabSpec, subnet: ipaddress.IPv4Network | None,
                   reserved: dict[ipaddress.IPv4Address, str], p: list[str]) -> None:
    if not spec.nodes:
        p.append("nodes: the lab needs at least one node")
    names: dict[str, int] = {}
    ips: dict[ipaddress.IPv4Address, int] = {}
    for i, node in enumerate(spec.nodes):
        if not HOSTNAME_RE.fullmatch(node.name):
            p.append(
                f"nodes[{i}].name: {show(node.name)} is not a valid hostname "
                "(lowercase letters, digits, '-', max 63, no leading/trailing '-')"
            )
        if node.name in names:
            p.append(f"nodes[{i}].name: {show(node.name)} repeats nodes[{names[node.name]}].name")
        names.setdefault(node.name, i)
        if node.distro not in DISTROS:
            p.append(
                f"nodes[{i}].distro: {show(node.distro)} is not supported "
                f"(use one of: {', '.join(sorted(DISTROS))})"
            )
        _label_problems(f"nodes[{i}].labels", node.labels, p)
        _interface(f"nodes[{i}].interface", node.interface, p)
        if node.box is not None and not BOX_RE.fullmatch(node.box):
            p.append(f"nodes[{i}].box: {show(node.box)} is not a Vagrant box name "
                     "(owner/name, e.g. bento/ubuntu-24.04)")
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


def _port_problems(spec: LabSpec, p: list[str]) -> None:
    dpp, ssh = spec.swarm.data_path_port, spec.firewall.ssh_port
    _port("swarm.data_path_port", dpp, p)
    lo, hi = DATA_PATH_PORT_RANGE
    if 1 <= dpp <= 65535 and not lo <= dpp <= hi:
        p.append(f"swarm.data_path_port: {dpp} is outside the range Docker accepts ({lo}-{hi})")
    if dpp in (*SWARM_PORTS, ssh):
        p.append(f"swarm.data_path_port: {dpp} collides with a swarm/SSH port")
    _port("firewall.ssh_port", ssh, p)
    if ssh in SWARM_PORTS:
        p.append(f"firewall.ssh_port: {ssh} is the {SWARM_PORTS[ssh]} port; pick another")
    if not 8 <= spec.swarm.default_addr_pool_mask_length <= 29:
        p.append(
            f"swarm.default_addr_pool_mask_length: {spec.swarm.default_addr_pool_mask_length} "
            "is out of range (use 8-29)"
        )


def _range_problems(spec: LabSpec, subnet: ipaddress.IPv4Network | None, p: list[str]) -> None:
    taken: list[tuple[str, ipaddress.IPv4Network]] = []
    if subnet is not None:
        taken.append(("network.subnet", subnet))
    mask = spec.swarm.default_addr_pool_mask_length
    ranges: list[tuple[str, str, tuple[int, int]]] = [
        (f"swarm.default_addr_pool[{i}]", pool, (POOL_MIN_PREFIX, 29))
        for i, pool in enumerate(spec.swarm.default_addr_pool)
    ]
    ranges += [
        (f"swarm.overlays[{i}].subnet", o.subnet, OVERLAY_PREFIX_RANGE)
        for i, o in enumerate(spec.swarm.overlays) if o.subnet is not None
    ]
    for path, value, prefixes in ranges:
        net = _net(path, value, p, prefixes)
        if net is None:
            continue
        if path.startswith("swarm.default_addr_pool") and mask < net.prefixlen:
            p.append(f"{path}: {net} is smaller than swarm.default_addr_pool_mask_length /{mask}; "
                     f"set the mask length to {net.prefixlen} or more, or widen the pool")
        for other_path, other in taken:
            if net.overlaps(other):
                p.append(f"{path}: {net} overlaps {other_path} {other}; pick a disjoint range")
        taken.append((path, net))


def _overlay_problems(spec: LabSpec, p: list[str]) -> None:
    seen_overlays: set[str] = set()
    for i, o in enumerate(spec.swarm.overlays):
        if not NETWORK_NAME_RE.fullmatch(o.name):
            p.append(f"swarm.overlays[{i}].name: {show(o.name)} is not a valid network name "
                     "(letters, digits, '_', '.', '-'; max 64)")
        if o.name in ("ingress", "docker_gwbridge", "bridge", "host", "none"):
            p.append(f"swarm.overlays[{i}].name: {show(o.name)} is reserved by Docker")
        if o.name in seen_overlays:
            p.append(f"swarm.overlays[{i}].name: {show(o.name)} is listed twice")
        seen_overlays.add(o.name)
        _label_problems(f"swarm.overlays[{i}].labels", o.labels, p)


# --- entry points -------------------------------------------------------------------------

def parse_spec(text: str, source: str = "<spec>") -> LabSpec:
    """Parse and validate YAML text; raise SpecError listing every problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(source, [f"the spec is larger than {MAX_SPEC_BYTES // 1024} KiB; "
                                 "a lab spec is a few KiB"])
    if "\x00" in text:
        raise SpecError(source, ["the spec contains NUL bytes: a binary file, not YAML text"])
    data = _load_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError(source, ["(top level): the spec must be a YAML mapping with name and nodes"])
    problems = _control_characters(data)
    try:
        spec = LabSpec.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            value = err.get("input")
            shown = "" if isinstance(value, (dict, list)) else f" (got {show(value)})"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling"
            problems.append(f"{_loc(err['loc'])}: {msg}{shown}")
        raise SpecError(source, problems) from None
    problems += _check(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def read_spec_text(path: Path) -> str:
    """The spec file's text: a regular file, at most MAX_SPEC_BYTES, UTF-8 (SpecError otherwise)."""
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block here
    except OSError as e:
        raise SpecError(source, [f"cannot read the spec: {e.strerror}"]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise SpecError(source, [f"cannot read the spec: {kind} (give the path of a "
                                     "YAML file)"])
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(source, [f"the spec is {info.st_size} bytes, larger than "
                                     f"{MAX_SPEC_BYTES // 1024} KiB; a lab spec is a few KiB"])
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(source, [f"cannot read the spec: {e.strerror}"]) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(source, [f"the spec is larger than {MAX_SPEC_BYTES // 1024} KiB"])
    if b"\x00" in raw:
        raise SpecError(source, ["the spec contains NUL bytes: a binary file, not YAML text"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(source, [f"the spec is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                                 f"offset {e.start}); save it as UTF-8"]) from None


def load_spec(path: str | Path) -> LabSpec:
    """Read and validate a lab spec file."""
    path = Path(path)
    return parse_spec(read_spec_text(path), str(path))
