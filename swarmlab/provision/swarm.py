"""Form the swarm from the spec: init, join, reconcile members, overlay networks.

Hand-written: pyinfra has no swarm operations (init/join/node update), and its
`docker.network` only checks that a network of that name exists (no re-create on drift);
the facts are pyinfra's DockerNetworks and swarmlab's one wide DockerDaemonState.

Every host declares the same operations in the same order (pyinfra orders operations that
only some hosts run by line, which could put a join before the init); each operation
decides at execution time, from live facts, whether this host has anything to do.
"""

from __future__ import annotations

import re
from weakref import WeakKeyDictionary

from gevent.lock import Semaphore
from pyinfra import host, logger, state
from pyinfra.api import HiddenValue, StringCommand, deploy, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.context import ctx_state

from swarmlab.model.spec import LabSpec, NodeSpec, OverlaySpec
from swarmlab.model.swarm_state import from_swarm
from swarmlab.provision.autolock import init_args, swarm_options, unlock_if_locked
from swarmlab.provision.context import declare_lab_facts, lab_node, lab_spec
from swarmlab.provision.factcache import Request
from swarmlab.provision.facts import KernelModules, OverlayNetworks, SwarmInfo, SwarmNodes
from swarmlab.provision.prefetch import register_facts
from swarmlab.provision.shell import argv, line, q

SWARM_PORT = 2377
MANAGED_LABELS = "swarmlab.labels"  # node label: the keys of the labels swarmlab set
DEFAULT_DATA_PATH_PORT = 4789


def init_command(spec: LabSpec, ip: str) -> str:
    words: list[object] = ["docker", "swarm", "init", "--advertise-addr", ip,
                           "--listen-addr", f"{ip}:{SWARM_PORT}"]
    if spec.swarm.data_path_port != DEFAULT_DATA_PATH_PORT:
        words += ["--data-path-port", spec.swarm.data_path_port]
    for pool in spec.swarm.default_addr_pool:
        words += ["--default-addr-pool", pool]
    if spec.swarm.default_addr_pool:
        words += ["--default-addr-pool-mask-length", spec.swarm.default_addr_pool_mask_length]
    words += init_args(spec)
    # --autolock prints the unlock key: init's stdout never reaches pyinfra's output
    return argv(*words) + (" >/dev/null" if spec.swarm.autolock else "")


def overlay_command(net: OverlaySpec) -> str:
    words: list[object] = ["docker", "network", "create", "--driver", "overlay"]
    if net.subnet:
        words += ["--subnet", net.subnet]
    if net.encrypted:
        words += ["--opt", "encrypted"]
    if net.attachable:
        words.append("--attachable")
    for key, value in sorted(net.labels.items()):
        words += ["--label", f"{key}={value}"]
    return argv(*words, net.name)


def reconcile_commands(spec: LabSpec, nodes: list[dict]) -> list[str]:
    """Manager-side fixes: drop stale and removed members, set roles and labels from the spec.

    Stale: a Down node that is not in the spec, or an older entry of a spec hostname that has
    a newer entry (a node that left and rejoined, or was re-created with the same name).
    """
    wanted = {n.name: n for n in spec.nodes}
    by_name: dict[str, list[dict]] = {}
    for n in nodes:
        by_name.setdefault(n["Description"]["Hostname"], []).append(n)
    current: dict[str, dict] = {}
    stale: list[tuple[dict, str]] = []
    for name, entries in by_name.items():
        # the member to keep: ready before down, then the newest
        entries.sort(key=lambda n: (n["Status"]["State"] == "ready", n.get("CreatedAt", "")))
        if name not in wanted:
            stale += [(n, "not in the spec") for n in entries if n["Status"]["State"] != "ready"]
            continue
        current[name] = entries[-1]
        stale += [(n, "replaced by a newer member") for n in entries[:-1]]
    cmds: list[str] = []
    for n, why in stale:
        logger.info(
            f"{host.print_prefix}removing swarm node {n['Description']['Hostname']} "
            f"({n['ID'][:12]}, {n['Status']['State']}): {why}"
        )
        if n["Spec"]["Role"] == "manager":
            cmds.append(argv("docker", "node", "demote", n["ID"]))
        cmds.append(argv("docker", "node", "rm", "--force", n["ID"]))
    for name, n in sorted(current.items()):
        if n["Status"]["State"] != "ready":
            continue
        node = wanted[name]
        if n["Spec"]["Role"] != node.role:
            verb = "promote" if node.role == "manager" else "demote"
            cmds.append(argv("docker", "node", verb, n["ID"]))
        args = label_update_args(node.labels, n["Spec"].get("Labels") or {})
        if args:
            cmds.append(argv("docker", "node", "update", *args, n["ID"]))
    return cmds


def label_update_args(wanted: dict[str, str], have: dict[str, str]) -> list[str]:
    """`docker node update` arguments that make a node's labels the spec's.

    Labels swarmlab set are listed in the MANAGED_LABELS label, so a label dropped from the
    spec is removed while labels someone added by hand stay.
    """
    managed = {k for k in have.get(MANAGED_LABELS, "").split(",") if k}
    args: list[str] = []
    for key, value in sorted(wanted.items()):
        if have.get(key) != value:
            args += ["--label-add", f"{key}={value}"]
    for key in sorted(managed - set(wanted)):
        if key in have:
            args += ["--label-rm", key]
    listed = ",".join(sorted(wanted))
    if listed and have.get(MANAGED_LABELS) != listed:
        args += ["--label-add", f"{MANAGED_LABELS}={listed}"]
    elif not listed and MANAGED_LABELS in have:
        args += ["--label-rm", MANAGED_LABELS]
    return args


@operation()
def swarm_init(is_first: bool, command: str):
    """On the first manager: `docker swarm init` unless it is already active."""
    if not is_first:
        host.noop("not the first manager: it joins the swarm")
        return
    node_state = from_swarm(host.get_fact(SwarmInfo)).local_node_state
    if node_state == "active":
        host.noop("the swarm is active")
        return
    if node_state == "locked":  # autolock: unlocked with the saved key, never left
        host.noop("the manager is locked (swarm.autolock): not leaving the swarm")
        return
    if node_state in ("pending", "error"):
        logger.warning(f"{host.print_prefix}swarm state {node_state!r}: leaving before init")
        yield "docker swarm leave --force"
    yield command


@operation()
def swarm_join(role: str | None, ip: str, manager_name: str, manager_ip: str):
    """Join as `role` with a token read from the first manager during this run."""
    if role is None:
        host.noop("the first manager: it creates the swarm")
        return
    info = from_swarm(host.get_fact(SwarmInfo))
    if info.in_swarm_of(manager_ip):
        host.noop(f"in the swarm of {manager_ip}")
        return
    node_state = info.local_node_state
    if node_state == "locked":
        host.noop("the manager is locked (swarm.autolock): not leaving the swarm")
        return
    if node_state and node_state != "inactive":
        logger.warning(
            f"{host.print_prefix}in another swarm or stale (state {node_state}, managers "
            f"{list(info.remote_managers)}): leaving it to join {manager_ip}"
        )
        yield "docker swarm leave --force"
    if not state.is_executing:
        # shown by the prepare phase only (never run): the token is read at execution time
        yield line("docker swarm join --token <read from", q(manager_name), "at run time>",
                   q(manager_ip))
        return
    token = join_token(manager_name, role)
    dpa = lab_spec().swarm.data_path_addr
    data_path = ["--data-path-addr", q(dpa)] if dpa else []
    yield StringCommand(
        "docker", "swarm", "join", "--token", HiddenValue(token),  # format checked: no quoting
        "--advertise-addr", q(ip), "--listen-addr", q(f"{ip}:{SWARM_PORT}"),
        *data_path, q(f"{manager_ip}:{SWARM_PORT}"),
    )


_TOKEN_LOCK = Semaphore()
# per pyinfra State (weak: a finished run's tokens go with it), then (manager, role)
_TOKENS: WeakKeyDictionary = WeakKeyDictionary()
TOKEN_RE = re.compile(r"SWMTKN-[0-9]+-[A-Za-z0-9-]{1,200}")


def join_token(manager_name: str, role: str) -> str:
    """The join token for `role`, read once per run from the first manager.

    Read with a plain command whose output pyinfra never prints (a `Command` fact's output
    is printed at -vvv and on errors). Joining hosts run in parallel greenlets; they share
    one read (under a lock) instead of each running a command on the manager at once.
    """
    key = (manager_name, role)
    with _TOKEN_LOCK:
        tokens = _TOKENS.setdefault(ctx_state.get(), {})
        if key not in tokens:
            manager = state.inventory.get_host(manager_name)
            token = read_quietly(manager, StringCommand(argv("docker", "swarm", "join-token",
                                                             "-q", role)))
            if not TOKEN_RE.fullmatch(token):
                raise RuntimeError(
                    f"could not read the swarm {role} join token from {manager_name} (empty or "
                    "not a SWMTKN token): is the first manager's swarm active?"
                )
            tokens[key] = token
        return tokens[key]


def read_quietly(target, command: StringCommand) -> str:
    """stdout of `command` on `target` (with sudo), never echoed by pyinfra at any verbosity.

    Nothing of the output goes to a log or an exception: on failure the result is "".
    """
    if not target.connected:
        target.connect(reason="to read the swarm join token", raise_exceptions=True)
    arguments, _ = pop_global_arguments(state, target, {"_sudo": True})
    connector_args = {k: v for k, v in arguments.items() if k in CONNECTOR_ARGUMENT_KEYS}
    ok, output = target.run_shell_command(command, print_output=False, print_input=False,
                                          **connector_args)
    return "\n".join(output.stdout_lines).strip() if ok else ""


@operation()
def swarm_reconcile(is_first: bool):
    """On the first manager: remove stale members, apply spec roles and labels."""
    if not is_first:
        host.noop("not the first manager")
        return
    commands = reconcile_commands(lab_spec(), host.get_fact(SwarmNodes))
    if not commands:
        host.noop("swarm members, roles and labels as the spec says")
    yield from commands


def overlay_drift(net: dict, subnet: str | None, encrypted: bool, attachable: bool,
                  labels: dict[str, str]) -> list[str]:
    """How an existing overlay differs from the spec ([] when it matches)."""
    have_subnets = {c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []}
    have_enc = "encrypted" in (net.get("Options") or {})
    out = []
    if subnet and subnet not in have_subnets:
        out.append(f"subnet {sorted(s for s in have_subnets if s)}, spec {subnet}")
    if have_enc != encrypted:
        out.append(f"encrypted={have_enc}, spec {encrypted}")
    if bool(net.get("Attachable")) != attachable:
        out.append(f"attachable={bool(net.get('Attachable'))}, spec {attachable}")
    if (net.get("Labels") or {}) != labels:
        out.append(f"labels {net.get('Labels') or {}}, spec {labels}")
    return out


@operation()
def overlay_network(is_first: bool, net_name: str, command: str, subnet: str | None,
                    encrypted: bool, attachable: bool, labels: dict[str, str] | None = None):
    """On the first manager: the overlay network as the spec says. Docker cannot change a
    network in place: one that differs is removed and created again (Docker refuses while
    containers or services use it, and the host fails with its message)."""
    if not is_first:
        host.noop("not the first manager")
        return
    nets = host.get_fact(OverlayNetworks)
    if net_name in nets:
        drift = overlay_drift(nets[net_name], subnet, encrypted, attachable, labels or {})
        if not drift:
            host.noop(f"overlay {net_name} is as the spec says")
            return
        logger.warning(f"{host.print_prefix}overlay {net_name} differs from the spec "
                       f"({'; '.join(drift)}): re-creating it (docker network rm, then create)")
        yield argv("docker", "network", "rm", net_name)
    yield command


def ingress_command(subnet: str | None, encrypted: bool) -> str:
    """`docker network create` of the swarm's ingress network (routing mesh)."""
    words = ["docker", "network", "create", "--driver", "overlay", "--ingress"]
    if subnet:
        words += ["--subnet", subnet]
    if encrypted:
        words += ["--opt", "encrypted"]
    return argv(*words, "ingress")


@operation()
def ingress_network(is_first: bool, hardened: bool):
    """On the first manager: the swarm's ingress network, if someone removed it. Under the
    hardened profile it is encrypted where the kernel has ESP (CIS 7.3): an unencrypted one
    is removed and created again with its subnet (Docker refuses while a service publishes a
    port, and the host fails with its message). Without ESP there is nothing to encrypt with."""
    if not is_first:
        host.noop("not the first manager")
        return
    nets = host.get_fact(OverlayNetworks)
    ingress = next((n for n in nets.values() if n.get("Ingress") or n["Name"] == "ingress"), None)
    encrypt = hardened and host.get_fact(KernelModules).get("esp4", "missing") != "missing"
    if ingress is None:
        yield ingress_command(None, encrypt)
        return
    if not encrypt or "encrypted" in (ingress.get("Options") or {}):
        host.noop("the ingress network exists")
        return
    subnets = [c["Subnet"] for c in (ingress.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
    logger.warning(f"{host.print_prefix}ingress is not encrypted though the kernel has ESP "
                   "(security.profile: hardened): re-creating it encrypted")
    yield line("printf 'y\\n' |", argv("docker", "network", "rm", ingress["Name"]))  # it asks
    yield ingress_command(subnets[0] if subnets else None, True)


def swarm_facts(spec: LabSpec, node: NodeSpec) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    if not spec.swarm.enabled:
        return []
    if node.name != spec.first_manager.name:
        return [(SwarmInfo, {})]
    return [(SwarmInfo, {}), (SwarmNodes, {}), (OverlayNetworks, {})]


@deploy("Swarm")
def form_swarm() -> None:
    spec = lab_spec()
    if not spec.swarm.enabled:
        return
    declare_lab_facts()
    node = lab_node()
    first = spec.first_manager
    is_first = node.name == first.name
    if spec.swarm.autolock and node.role == "manager":
        unlock_if_locked(host, spec)  # before any fact is read: a locked manager reads as none
    swarm_init(name="swarm init (first manager)", is_first=is_first,
               command=init_command(spec, first.ip))
    swarm_options(name="swarm options and unlock key", is_first=is_first)
    swarm_join(
        name="swarm join",
        role=None if is_first else node.role,
        ip=node.ip,
        manager_name=first.name,
        manager_ip=first.ip,
    )
    swarm_reconcile(name="swarm members match the spec", is_first=is_first)
    for net in spec.swarm.overlays:
        overlay_network(
            name=f"overlay network {net.name}",
            is_first=is_first,
            net_name=net.name,
            command=overlay_command(net),
            subnet=net.subnet,
            encrypted=net.encrypted,
            attachable=net.attachable,
            labels=dict(net.labels),
        )
    ingress_network(name="ingress network", is_first=is_first,
                    hardened=spec.security.profile == "hardened")


register_facts(__name__, 80, lambda spec, node, distro: swarm_facts(spec, node))
