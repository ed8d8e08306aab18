"""CIS Docker Benchmark 1.6.0 checks that apply to a lab host, evaluated natively.

Sections 2 (daemon configuration), 3 (the daemon's files: ownership and modes) and 7 (swarm),
numbered as docker-bench-security 1.6.0 numbers them. `collect` reads a node's state with
plain commands (no downloaded script); `evaluate` turns it into findings: `pass`,
`lab choice` (a deliberate lab setting, with the spec field that changes it) or `fail`.
With `security.profile: hardened` what a lab can do is required.

Fail closed: `Facts.read` names the reads that succeeded, and each check declares the reads
it needs (`docker info` always); a check whose read failed is a failure naming that read,
never a pass (a default `Facts()` has read nothing, so every check fails on it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from swarmlab.model.spec import LabSpec, NodeSpec

PASS, LAB, FAIL = "pass", "lab choice", "fail"
ORDER = {PASS: 0, LAB: 1, FAIL: 2}
REMOTE_LOG_DRIVERS = {"syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
                      "gcplogs", "logentries"}
SECRET_ENV_RE = re.compile(r"(PASS|SECRET|TOKEN|PRIVATE|API_?KEY|CREDENTIAL)", re.I)
MAX_KEY_AGE_DAYS = 90
MAX_NODE_CERT_EXPIRY_S = 90 * 86400


@dataclass(frozen=True)
class Finding:
    cis: str
    title: str
    status: str  # pass | lab choice | fail
    detail: str
    spec_field: str | None = None

    def line(self, node: str) -> str:
        where = f" (spec: {self.spec_field})" if self.spec_field else ""
        return f"{node} CIS {self.cis} {self.status}: {self.title} — {self.detail}{where}"


@dataclass
class Facts:
    """What the checks read from one node (and, for swarm checks, from the control machine)."""

    info: dict = field(default_factory=dict)  # docker info
    daemon_json: dict = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # the main dockerd's arguments
    stats: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (user:group, mode)
    units: dict[str, str] = field(default_factory=dict)  # docker.service/socket -> unit file
    bridge_options: dict = field(default_factory=dict)
    listeners_2377: list[str] = field(default_factory=list)  # local addresses
    overlays: list[dict] = field(default_factory=list)  # manager: network inspect
    services: list[dict] = field(default_factory=list)  # manager: service inspect
    secrets: int = 0
    user: str = ""  # the user the main dockerd runs as
    kernel: dict[str, str] = field(default_factory=dict)  # module -> loaded | loadable | missing
    addresses: list[dict] = field(default_factory=list)  # `ip -j -4 addr show`
    read: set[str] = field(default_factory=set)  # the reads that succeeded (READS)
    ca_days_left: float | None = None  # swarm root CA (manager)
    key_age_days: float | None = None  # the saved unlock key (control machine)


# --- collecting ---------------------------------------------------------------------------

SOCKETS = ("/run/docker.sock", "/var/run/docker.sock")


def _json(text: str, default):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return default


def _lines_json(text: str) -> list[dict]:
    return [d for line in text.splitlines() if (d := _json(line, None)) is not None]


# the reads a check can need (Facts.read holds those that succeeded)
READS = ("info", "daemon.json", "args", "user", "units", "stats", "bridge", "listeners",
         "kernel", "addresses", "overlays", "services", "secrets")
PID = "systemctl show -p MainPID --value docker.service"
ADDRESSES = "ip -j -4 addr show"
# KernelModules' command (swarmlab.provision.facts), one line per module: "<module> <state>"
KERNEL_STATES = ("loaded", "loadable", "missing")


def collect(run: Callable[[str], tuple[int, str]], manager: bool, kernel_command: str = "") -> Facts:
    """A node's facts; `run(command)` returns (exit code, stdout). A read counts (Facts.read)
    only when its command succeeded and its output parsed."""
    f = Facts()

    def ok(command: str) -> str | None:
        rc, out = run(command)
        return out if rc == 0 else None

    info = _json(ok("docker info --format '{{json .}}'") or "", None)
    if isinstance(info, dict) and info.get("ServerVersion"):
        f.info = info
        f.read.add("info")
    daemon_json = _json(ok("cat /etc/docker/daemon.json") or "", None)
    if isinstance(daemon_json, dict):
        f.daemon_json = daemon_json
        f.read.add("daemon.json")
    pid = (ok(PID) or "").strip()
    if pid.isdigit() and pid != "0":
        args = (ok(f"tr '\\0' ' ' < /proc/{pid}/cmdline") or "").split()
        if args:
            f.args = args
            f.read.add("args")
        user = (ok(f"ps -o user= -p {pid}") or "").strip()
        if user:
            f.user = user
            f.read.add("user")
    units = {unit: ok(f"systemctl show -p FragmentPath --value {unit}")
             for unit in ("docker.service", "docker.socket")}
    f.units = {unit: path.strip() for unit, path in units.items() if path and path.strip()}
    if None not in units.values():
        f.read.add("units")
    paths = [*f.units.values(), "/etc/docker", "/etc/docker/daemon.json", *SOCKETS,
             *tls_files(f.args, f.daemon_json).values()]
    quoted = " ".join("'" + p.replace("'", "") + "'" for p in paths)
    stats = ok(f"stat -L -c '%U:%G %a %n' {quoted} 2>/dev/null; true")
    for line in (stats or "").splitlines():
        owner, mode, path = (line.split(" ", 2) + ["", ""])[:3]
        if path and mode.isdigit():
            f.stats[path] = (owner, int(mode, 8))
    if stats is not None:
        f.read.add("stats")
    bridge = _json(ok("docker network inspect bridge --format '{{json .Options}}'") or "", None)
    if isinstance(bridge, dict):
        f.bridge_options = bridge
        f.read.add("bridge")
    listeners = ok("ss -Hltn 'sport = :2377'")
    if listeners is not None:
        f.listeners_2377 = [w[3] for line in listeners.splitlines() if len(w := line.split()) >= 4]
        f.read.add("listeners")
    kernel = parse_kernel(ok(kernel_command) or "") if kernel_command else {}
    if kernel:
        f.kernel = kernel
        f.read.add("kernel")
    addresses = _json(ok(ADDRESSES) or "", None)
    if isinstance(addresses, list) and addresses:
        f.addresses = addresses
        f.read.add("addresses")
    if manager:
        _collect_swarm(ok, f)
    return f


def parse_kernel(output: str) -> dict[str, str]:
    """KernelModules' output ("<module> loaded|loadable|missing" lines) as a dict."""
    return {w[0]: w[1] for line in output.splitlines()
            if len(w := line.split()) == 2 and w[1] in KERNEL_STATES}


def _collect_swarm(ok: Callable[[str], str | None], f: Facts) -> None:
    """The manager's overlays, services and secrets (each list read, then inspected)."""
    for name, kind, ls in (("overlays", "network", "docker network ls -q --filter driver=overlay"),
                           ("services", "service", "docker service ls -q")):
        ids = ok(ls)
        if ids is None:
            continue
        items: list[dict] = []
        if ids.split():
            quoted = " ".join("'" + i.replace("'", "") + "'" for i in ids.split())
            out = ok(f"docker {kind} inspect --format '{{{{json .}}}}' {quoted}")
            if out is None:
                continue
            items = _lines_json(out)
            if len(items) != len(ids.split()):
                continue
        setattr(f, name, items)
        f.read.add(name)
    secrets = ok("docker secret ls -q")
    if secrets is not None:
        f.secrets = len(secrets.split())
        f.read.add("secrets")


def ca_days_left(pem: str, now=None) -> float | None:
    """Days the swarm root CA (`docker swarm ca` output) is still valid."""
    import datetime as dt

    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def tls_files(args: list[str], daemon_json: dict) -> dict[str, str]:
    """tlscacert/tlscert/tlskey from dockerd's flags or daemon.json."""
    out = {k: v for k in ("tlscacert", "tlscert", "tlskey") if (v := daemon_json.get(k))}
    for a in args:
        for k in ("tlscacert", "tlscert", "tlskey"):
            if a.startswith(f"--{k}="):
                out[k] = a.split("=", 1)[1]
    return out


def tcp_hosts(args: list[str], daemon_json: dict) -> list[str]:
    hosts = [h for h in (daemon_json.get("hosts") or []) if str(h).startswith("tcp://")]
    for i, a in enumerate(args):
        value = args[i + 1] if a in ("-H", "--host") and i + 1 < len(args) else \
            a.split("=", 1)[1] if a.startswith("--host=") else a[2:] if a.startswith("-H") else ""
        if value.startswith("tcp://"):
            hosts.append(value)
    return hosts


def _flag(args: list[str], daemon_json: dict, key: str):
    """A daemon option from daemon.json or a `--key[=value]` flag (None when unset)."""
    for a in args:
        if a == f"--{key}":
            return True
        if a.startswith(f"--{key}="):
            value = a.split("=", 1)[1]
            return {"true": True, "false": False}.get(value, value)
    return daemon_json.get(key)


# --- evaluating ---------------------------------------------------------------------------

@dataclass
class Ctx:
    spec: LabSpec
    node: NodeSpec
    f: Facts

    @property
    def hardened(self) -> bool:
        return self.spec.security.profile == "hardened"

    def opt(self, key: str):
        return _flag(self.f.args, self.f.daemon_json, key)

    def choice(self, detail: str, spec_field: str, required: bool) -> tuple[str, str, str]:
        """A lab choice, or a failure where the hardened profile requires the setting."""
        if required and self.hardened:
            return FAIL, f"{detail}; security.profile: hardened requires it", spec_field
        return LAB, detail, spec_field

Result = tuple[str, str, str | None]
CHECKS: list[tuple[str, str, str, Callable[[Ctx], Result]]] = []  # (cis, title, scope, fn)
NEEDS: dict[str, tuple[str, ...]] = {}  # cis -> the reads it needs besides docker info
OPTIONS = ("args", "daemon.json")  # a daemon option comes from dockerd's flags or daemon.json


def check(cis: str, title: str, scope: str = "node", needs: tuple[str, ...] = ()):
    def register(fn: Callable[[Ctx], Result]):
        CHECKS.append((cis, title, scope, fn))
        NEEDS[cis] = ("info", *needs)
        return fn

    return register


def unread(cis: str, facts: Facts) -> list[str]:
    """The reads check `cis` needs that failed on the node."""
    return [r for r in NEEDS[cis] if r not in facts.read]


def _daemon_option(key: str, want: bool, good: str, otherwise: str) -> Callable[[Ctx], Result]:
    """Pass when dockerd's boolean option `key` is `want`; else the lab choice of
    docker.daemon.<key> (a failure under the hardened profile)."""
    def fn(c: Ctx) -> Result:
        if c.opt(key) is want:
            return PASS, good, None
        return c.choice(otherwise, f"docker.daemon.{key}", required=True)

    return fn


@check("2.1", "Run the Docker daemon as a non-root user, if possible", needs=("args", "user"))
def _c2_1(c: Ctx) -> Result:
    if c.f.user != "root":
        return PASS, f"dockerd runs as {c.f.user}", None
    if c.spec.swarm.enabled:
        return LAB, ("dockerd runs as root: swarm mode needs the rootful daemon; per-user rootless "
                     "daemons (outside the swarm) are what rootless.users gives"), "rootless.users"
    return c.choice("dockerd runs as root (the lab has no swarm: a rootless daemon could serve it)",
                    "rootless.users", required=False)


@check("2.2", "Ensure network traffic is restricted between containers on the default bridge",
       needs=("bridge",))
def _c2_2(c: Ctx) -> Result:
    if c.f.bridge_options.get("com.docker.network.bridge.enable_icc") == "false":
        return PASS, "icc disabled on docker0", None
    return c.choice("containers on docker0 talk to each other (icc on, Docker's default)",
                    "docker.daemon.icc", required=True)


@check("2.3", "Ensure the logging level is set to 'info'", needs=OPTIONS)
def _c2_3(c: Ctx) -> Result:
    level = c.opt("log-level") or "info"
    return (PASS, "log-level info", None) if level == "info" else \
        (FAIL, f"log-level {level}", "docker.daemon.log-level")


@check("2.4", "Ensure Docker is allowed to make changes to iptables", needs=OPTIONS)
def _c2_4(c: Ctx) -> Result:
    return (FAIL, "iptables: false", "docker.daemon.iptables") if c.opt("iptables") is False \
        else (PASS, "Docker manages iptables", None)


@check("2.5", "Ensure insecure registries are not used")
def _c2_5(c: Ctx) -> Result:
    cidrs = (c.f.info.get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    bad = [x for x in cidrs if x not in ("127.0.0.0/8", "::1/128")]
    bad += [name for name, idx in ((c.f.info.get("RegistryConfig") or {}).get("IndexConfigs") or {}).items()
            if idx.get("Secure") is False]
    return (FAIL, f"insecure registries {bad}", "docker.daemon.insecure-registries") if bad \
        else (PASS, "no insecure registry beyond loopback", None)


@check("2.6", "Ensure aufs storage driver is not used")
def _c2_6(c: Ctx) -> Result:
    driver = c.f.info.get("Driver")
    return (FAIL, "aufs", "docker.daemon.storage-driver") if driver == "aufs" \
        else (PASS, f"storage driver {driver}", None)


@check("2.7", "Ensure TLS authentication for Docker daemon is configured", needs=OPTIONS)
def _c2_7(c: Ctx) -> Result:
    tcp = tcp_hosts(c.f.args, c.f.daemon_json)
    if not tcp:
        if c.spec.docker.tls:
            return FAIL, "docker.tls is on but dockerd serves no TCP listener", "docker.tls"
        return PASS, "no TCP listener (unix socket only)", None
    files = tls_files(c.f.args, c.f.daemon_json)
    if c.opt("tlsverify") is True and len(files) == 3:
        return PASS, f"{', '.join(tcp)} with --tlsverify and CA/cert/key", None
    return FAIL, f"{', '.join(tcp)} without TLS client verification", "docker.tls"


@check("2.8", "Ensure the default ulimit is configured appropriately", needs=OPTIONS)
def _c2_8(c: Ctx) -> Result:
    if c.opt("default-ulimits"):
        return PASS, "default-ulimits set", None
    return c.choice("Docker's default limits (a manual check in the benchmark)",
                    "docker.daemon.default-ulimits", required=True)


@check("2.9", "Enable user namespace support")
def _c2_9(c: Ctx) -> Result:
    if any("name=userns" in o for o in c.f.info.get("SecurityOptions") or []):
        return PASS, "userns-remap on", None
    return c.choice("no userns-remap: swarm services cannot opt out of it (no --userns=host), and "
                    "it breaks host-network and privileged workloads", "docker.daemon.userns-remap",
                    required=True)


@check("2.10", "Ensure the default cgroup usage has been confirmed", needs=OPTIONS)
def _c2_10(c: Ctx) -> Result:
    parent = c.opt("cgroup-parent")
    return (FAIL, f"cgroup-parent {parent}", "docker.daemon.cgroup-parent") if parent \
        else (PASS, "default cgroup parent", None)


@check("2.11", "Ensure base device size is not changed until needed", needs=OPTIONS)
def _c2_11(c: Ctx) -> Result:
    opts = c.opt("storage-opts") or []
    bad = [o for o in opts if "basesize" in str(o)]
    return (FAIL, f"storage-opts {bad}", "docker.daemon.storage-opts") if bad \
        else (PASS, "base device size unchanged", None)


@check("2.12", "Ensure that authorization for Docker client commands is enabled")
def _c2_12(c: Ctx) -> Result:
    plugins = (c.f.info.get("Plugins") or {}).get("Authorization") or []
    if plugins:
        return PASS, f"authorization plugins {plugins}", None
    return LAB, ("no authorization plugin (none ships with the distros' Docker): the socket is "
                 "root/docker-group only and 2376 needs a lab client certificate"), \
        "docker.daemon.authorization-plugins"


@check("2.13", "Ensure centralized and remote logging is configured", needs=OPTIONS)
def _c2_13(c: Ctx) -> Result:
    driver = c.f.info.get("LoggingDriver")
    if driver in REMOTE_LOG_DRIVERS:
        return PASS, f"log driver {driver}", None
    opts = c.opt("log-opts") or {}
    if driver == "local" or (driver == "json-file" and opts.get("max-size")):
        limits = ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or "local driver's defaults"
        return LAB, f"no log server in a lab: {driver} logs kept on the node, rotated ({limits})", \
            "docker.log_driver"
    return FAIL, f"{driver} logs without a size limit (they can fill the disk)", "docker.log_opts"


check("2.14", "Ensure containers are restricted from acquiring new privileges", needs=OPTIONS)(_daemon_option(
    "no-new-privileges", True, "no-new-privileges on", "containers may gain privileges (setuid)"))


@check("2.15", "Ensure live restore is enabled")
def _c2_15(c: Ctx) -> Result:
    if c.f.info.get("LiveRestoreEnabled"):
        return PASS, "live-restore on", None
    if c.spec.swarm.enabled:
        return LAB, "live-restore is incompatible with swarm mode (dockerd refuses to start)", \
            "swarm.enabled"
    return c.choice("live-restore off", "docker.daemon.live-restore", required=False)


check("2.16", "Ensure Userland Proxy is Disabled", needs=OPTIONS)(_daemon_option(
    "userland-proxy", False, "userland-proxy off (published ports by iptables only)",
    "docker-proxy runs for published ports"))


@check("2.17", "Ensure that a daemon-wide custom seccomp profile is applied if appropriate")
def _c2_17(c: Ctx) -> Result:
    opts = [o for o in c.f.info.get("SecurityOptions") or [] if "name=seccomp" in o]
    return (PASS, f"seccomp {opts[0].split('profile=')[-1]} profile", None) if opts \
        else (FAIL, "no seccomp profile", "docker.daemon.seccomp-profile")


@check("2.18", "Ensure that experimental features are not implemented in production")
def _c2_18(c: Ctx) -> Result:
    return (FAIL, "experimental on", "docker.daemon.experimental") if c.f.info.get("ExperimentalBuild") \
        else (PASS, "experimental off", None)


def _stat_check(path_of: Callable[[Ctx], str | None], owner: str | None, max_mode: int | None,
                missing: Callable[[Ctx], Result | None]) -> Callable[[Ctx], Result]:
    """`missing(c)`: the result when the check has no path (None: a failure)."""
    def fn(c: Ctx) -> Result:
        path = path_of(c)
        if not path:
            return missing(c) or (FAIL, "no path to check", None)
        st = c.f.stats.get(path)
        if st is None:
            return FAIL, f"{path} is missing", None
        have_owner, mode = st
        if owner is not None:
            return (PASS, f"{path} {have_owner}", None) if have_owner == owner else \
                (FAIL, f"{path} is owned by {have_owner}, not {owner}", None)
        return (PASS, f"{path} mode {mode:o}", None) if mode & ~max_mode == 0 else \
            (FAIL, f"{path} mode {mode:o} is wider than {max_mode:o}", None)

    return fn


def _socket(c: Ctx) -> str | None:
    return next((s for s in SOCKETS if s in c.f.stats), SOCKETS[0])


def _tls(key: str) -> Callable[[Ctx], str | None]:
    return lambda c: tls_files(c.f.args, c.f.daemon_json).get(key)


def _no_tls(c: Ctx) -> Result:
    """No TLS file configured: right only where dockerd serves no TCP API and none is asked."""
    if c.spec.docker.tls:
        return FAIL, "docker.tls is on but dockerd is given no TLS file", "docker.tls"
    tcp = tcp_hosts(c.f.args, c.f.daemon_json)
    if tcp:
        return FAIL, f"{', '.join(tcp)} without TLS files", "docker.tls"
    return PASS, "no TLS files (no TCP listener)", None


def _no_socket_unit(c: Ctx) -> Result:
    return PASS, "no docker.socket unit", None


def _required(c: Ctx) -> None:
    return None


NO_TLS = _no_tls
UNITS, TLS_NEEDS = ("stats", "units"), ("stats", *OPTIONS)
for _cis, _title, _path, _owner, _mode, _missing in (
    ("3.1", "Ensure that the docker.service file ownership is set to root:root",
     lambda c: c.f.units.get("docker.service"), "root:root", None, _required),
    ("3.2", "Ensure that docker.service file permissions are appropriately set",
     lambda c: c.f.units.get("docker.service"), None, 0o644, _required),
    ("3.3", "Ensure that docker.socket file ownership is set to root:root",
     lambda c: c.f.units.get("docker.socket"), "root:root", None, _no_socket_unit),
    ("3.4", "Ensure that docker.socket file permissions are set to 644 or more restrictive",
     lambda c: c.f.units.get("docker.socket"), None, 0o644, _no_socket_unit),
    ("3.5", "Ensure that the /etc/docker directory ownership is set to root:root",
     lambda c: "/etc/docker", "root:root", None, _required),
    ("3.6", "Ensure that /etc/docker directory permissions are set to 755 or more restrictively",
     lambda c: "/etc/docker", None, 0o755, _required),
    ("3.9", "Ensure that TLS CA certificate file ownership is set to root:root",
     _tls("tlscacert"), "root:root", None, NO_TLS),
    ("3.10", "Ensure that TLS CA certificate file permissions are set to 444 or more restrictively",
     _tls("tlscacert"), None, 0o444, NO_TLS),
    ("3.11", "Ensure that Docker server certificate file ownership is set to root:root",
     _tls("tlscert"), "root:root", None, NO_TLS),
    ("3.12", "Ensure that the Docker server certificate file permissions are set to 444 or more "
     "restrictively", _tls("tlscert"), None, 0o444, NO_TLS),
    ("3.13", "Ensure that the Docker server certificate key file ownership is set to root:root",
     _tls("tlskey"), "root:root", None, NO_TLS),
    ("3.14", "Ensure that the Docker server certificate key file permissions are set to 400",
     _tls("tlskey"), None, 0o400, NO_TLS),
    ("3.15", "Ensure that the Docker socket file ownership is set to root:docker",
     _socket, "root:docker", None, _required),
    ("3.16", "Ensure that the Docker socket file permissions are set to 660 or more restrictively",
     _socket, None, 0o660, _required),
    ("3.17", "Ensure that the daemon.json file ownership is set to root:root",
     lambda c: "/etc/docker/daemon.json", "root:root", None, _required),
    ("3.18", "Ensure that daemon.json file permissions are set to 644 or more restrictive",
     lambda c: "/etc/docker/daemon.json", None, 0o644, _required),
):
    _needs = UNITS if _cis in ("3.1", "3.2", "3.3", "3.4") else \
        TLS_NEEDS if _missing is NO_TLS else ("stats",)
    check(_cis, _title, needs=_needs)(_stat_check(_path, _owner, _mode, _missing))


def _cluster_spec(c: Ctx) -> dict:
    return ((c.f.info.get("Swarm") or {}).get("Cluster") or {}).get("Spec") or {}


@check("7.1", "Ensure that the minimum number of manager nodes have been created in a swarm",
       "manager")
def _c7_1(c: Ctx) -> Result:
    managers = (c.f.info.get("Swarm") or {}).get("Managers")
    want = len(c.spec.managers)
    if managers == want and managers % 2 == 1 and managers <= 7:
        return PASS, f"{managers} manager(s), as the spec says (odd, at most 7)", None
    return FAIL, f"{managers} managers, the spec has {want}", "nodes[].role"


@check("7.2", "Ensure that swarm services are bound to a specific host interface", "manager",
       needs=("listeners",))
def _c7_2(c: Ctx) -> Result:
    have = c.f.listeners_2377
    if not have:
        return FAIL, "nothing listens on 2377", None
    wide = [a for a in have if a.rsplit(":", 1)[0] not in (c.node.ip,)]
    return (FAIL, f"2377 bound to {wide}, not only {c.node.ip}", None) if wide \
        else (PASS, f"2377 bound to {c.node.ip} only", None)


@check("7.3", "Ensure that all Docker swarm overlay networks are encrypted", "manager",
       needs=("overlays", "kernel"))
def _c7_3(c: Ctx) -> Result:
    spec_nets = {o.name: i for i, o in enumerate(c.spec.swarm.overlays)}
    have = {n.get("Name") for n in c.f.overlays}
    absent = [o.name for o in c.spec.swarm.overlays if o.name not in have]
    if not any(n.get("Ingress") or n.get("Name") == "ingress" for n in c.f.overlays):
        absent.append("ingress")
    if absent:
        return FAIL, f"overlays missing on the manager: {absent}", "swarm.overlays"
    esp = c.f.kernel.get("esp4", "missing")
    results: list[Result] = []
    for net in c.f.overlays:
        if net.get("Scope") != "swarm" or "encrypted" in (net.get("Options") or {}):
            continue
        name = net.get("Name")
        if net.get("Ingress") or name == "ingress":
            if esp == "missing":
                results.append((LAB, "ingress is not encrypted: this kernel has no ESP (esp4 "
                                "missing) to encrypt it with", None))
            else:
                results.append(c.choice(f"ingress (the routing mesh, as Docker creates it) is not "
                                        f"encrypted though ESP is {esp}", "security.profile",
                                        required=True))
        elif name in spec_nets:
            results.append(c.choice(f"overlay {name} is not encrypted",
                                    f"swarm.overlays[{spec_nets[name]}].encrypted", required=True))
        else:
            results.append(c.choice(f"overlay {name} (not in the spec) is not encrypted",
                                    "swarm.overlays", required=True))
    if not results:
        return PASS, f"every overlay encrypted ({len(c.f.overlays)} overlays)", None
    worst = max(results, key=lambda r: ORDER[r[0]])
    detail = "; ".join(r[1] for r in results)
    fields = ", ".join(sorted({r[2] for r in results if r[2]}))
    return worst[0], detail, fields or None


@check("7.4", "Ensure that Docker's secret management commands are used for managing secrets "
       "in a swarm cluster", "manager", needs=("services", "secrets"))
def _c7_4(c: Ctx) -> Result:
    bad = []
    for svc in c.f.services:
        env = ((svc.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Env") or []
        bad += [f"{svc['Spec'].get('Name')}: {e.split('=', 1)[0]}" for e in env
                if SECRET_ENV_RE.search(e.split("=", 1)[0])]
    if bad:
        return FAIL, f"secret-like environment variables in services ({bad}): use docker secret", None
    return PASS, f"no secret in service environments; {c.f.secrets} swarm secret(s)", None


@check("7.5", "Ensure that swarm manager is run in auto-lock mode", "manager")
def _c7_5(c: Ctx) -> Result:
    if (_cluster_spec(c).get("EncryptionConfig") or {}).get("AutoLockManagers"):
        return PASS, "autolock on", None
    return c.choice("managers keep the raft key on disk unlocked", "swarm.autolock", required=True)


@check("7.6", "Ensure that the swarm manager auto-lock key is rotated periodically", "manager")
def _c7_6(c: Ctx) -> Result:
    if not (_cluster_spec(c).get("EncryptionConfig") or {}).get("AutoLockManagers"):
        return c.choice("no auto-lock key (autolock off)", "swarm.autolock", required=True)
    age = c.f.key_age_days
    if age is None:
        return FAIL, "autolock on but no saved unlock key on the control machine", None
    if age > MAX_KEY_AGE_DAYS:
        return FAIL, f"unlock key {age:.0f} days old (> {MAX_KEY_AGE_DAYS})", "swarm.rotate_unlock_key"
    return PASS, f"unlock key {age:.0f} days old (rotate with swarm.rotate_unlock_key)", None


@check("7.7", "Ensure that node certificates are rotated as appropriate", "manager")
def _c7_7(c: Ctx) -> Result:
    ns = (_cluster_spec(c).get("CAConfig") or {}).get("NodeCertExpiry")
    if not ns:
        return FAIL, "no node certificate expiry in the cluster spec", "swarm.cert_expiry"
    secs = ns / 1e9
    if secs <= MAX_NODE_CERT_EXPIRY_S:
        return PASS, f"node certificates renewed every {secs / 86400:.0f} days", None
    return FAIL, f"node certificates live {secs / 86400:.0f} days (> 90)", "swarm.cert_expiry"


@check("7.8", "Ensure that CA certificates are rotated as appropriate", "manager")
def _c7_8(c: Ctx) -> Result:
    if c.f.ca_days_left is None:
        return FAIL, "could not read the swarm root CA (docker swarm ca)", None
    if c.f.ca_days_left < 30:
        return FAIL, f"the swarm root CA expires in {c.f.ca_days_left:.0f} days", None
    return PASS, (f"root CA valid {c.f.ca_days_left:.0f} more days (a manual check: rotate with "
                  "docker swarm ca --rotate)"), None


@check("7.9", "Ensure that management plane traffic is separated from data plane traffic",
       needs=("addresses",))
def _c7_9(c: Ctx) -> Result:
    if not c.spec.swarm.enabled:
        return LAB, "swarm.enabled is false: no swarm planes to separate", "swarm.enabled"
    nics = {e.get("ifname"): [a.get("local") for a in e.get("addr_info") or []]
            for e in c.f.addresses if e.get("ifname") != "lo"
            and not str(e.get("ifname", "")).startswith(("docker", "veth", "br-"))}
    lab_nic = next((n for n, ips in nics.items() if c.node.ip in ips), None)
    if lab_nic is None:
        return FAIL, f"no interface carries the lab address {c.node.ip}", None
    want = c.spec.swarm.data_path_addr
    if want:
        data_nic = want if want in nics else next((n for n, ips in nics.items() if want in ips), None)
        if data_nic is None:
            return FAIL, f"swarm.data_path_addr {want} is on no interface of the node", \
                "swarm.data_path_addr"
        if data_nic == lab_nic:
            return FAIL, f"data path {want} is the management interface {lab_nic}", "swarm.data_path_addr"
        return PASS, f"data path on {data_nic}, management on {lab_nic}", None
    others = sorted(n for n in nics if n != lab_nic)
    if not others:
        return LAB, f"one NIC ({lab_nic}): management and data plane share the lab address", \
            "swarm.data_path_addr"
    return c.choice(f"management and data plane share {lab_nic} though the node also has "
                    f"{others}", "swarm.data_path_addr", required=True)


def checks_for(scope: str) -> list[str]:
    return [cis for cis, _, s, _ in CHECKS if s == scope]


def evaluate(cis: str, spec: LabSpec, node: NodeSpec, facts: Facts) -> Finding:
    for cid, title, _, fn in CHECKS:
        if cid == cis:
            failed = unread(cis, facts)
            if failed:
                return Finding(cid, title, FAIL, f"could not read {', '.join(failed)} on the node")
            status, detail, spec_field = fn(Ctx(spec, node, facts))
            return Finding(cid, title, status, detail, spec_field)
    raise KeyError(cis)


def evaluate_all(spec: LabSpec, node: NodeSpec, facts: Facts) -> list[Finding]:
    scopes = {"node", "manager"} if node.role == "manager" else {"node"}
    return [evaluate(cis, spec, node, facts) for cis, _, s, _ in CHECKS if s in scopes]
