"""Swarm autolock and the swarm options set with `docker swarm update`.

The unlock key lives on the control machine only (`.state/<lab>/swarm-unlock-key`, 0600).
It is read with `read_quietly` (never echoed by pyinfra at any verbosity), given to
`docker swarm unlock` on stdin (never in argv), and commands that would print it have their
stdout sent to /dev/null.

Hand-written: pyinfra has no swarm operations (`docker swarm update`/`unlock-key`/`unlock`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

from swarmlab.model.spec import LabSpec, duration_seconds
from swarmlab.model.state import lab_state_dir
from swarmlab.model.swarm_state import from_swarm
from swarmlab.provision import factcache
from swarmlab.provision.facts import SwarmInfo
from swarmlab.provision.shell import argv

KEY_RE = re.compile(r"SWMKEY-1-[A-Za-z0-9+/=]{1,200}")
NS = 1_000_000_000


def key_path(spec: LabSpec) -> Path:
    return lab_state_dir(spec.name) / "swarm-unlock-key"


def _connector_args(target) -> dict:
    from pyinfra import state

    arguments, _ = pop_global_arguments(state, target, {"_sudo": True})
    return {k: v for k, v in arguments.items() if k in CONNECTOR_ARGUMENT_KEYS}


def _quiet(target, command: str, stdin: str | None = None) -> tuple[bool, str]:
    """Run on `target` with sudo; nothing of input or output is printed or logged."""
    if not target.connected:
        target.connect(reason="swarm autolock", raise_exceptions=True)
    args = _connector_args(target)
    if stdin is not None:
        args["_stdin"] = stdin
    ok, output = target.run_shell_command(StringCommand(command), print_output=False,
                                          print_input=False, **args)
    return ok, "\n".join(output.stdout_lines).strip()


def save_key(target, path: Path) -> bool:
    """Read the unlock key from manager `target` into `path` (0600) when it differs."""
    ok, key = _quiet(target, argv("docker", "swarm", "unlock-key", "-q"))
    if not ok or not KEY_RE.fullmatch(key):
        logger.error(f"{target.print_prefix}could not read the swarm unlock key")
        return False
    if path.exists() and path.read_text().strip() == key:
        return True
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.replace(tmp, path)
    logger.info(f"{target.print_prefix}swarm unlock key saved to {path} (0600)")
    return True


def _key_saved(target, path: Path) -> bool:
    """The saved key is the swarm's (compared here, never printed; a lab re-created with the
    same name leaves a stale file)."""
    if not path.exists():
        return False
    ok, key = _quiet(target, argv("docker", "swarm", "unlock-key", "-q"))
    return ok and key == path.read_text().strip()


def unlock_if_locked(target, spec: LabSpec) -> str:
    """Unlock a locked manager with the saved key; returns the node's state afterwards."""
    _, node_state = _quiet(target, "docker info --format '{{.Swarm.LocalNodeState}}'")
    if node_state != "locked":
        return node_state
    path = key_path(spec)
    if not path.exists():
        logger.error(f"{target.print_prefix}the manager is locked and {path} is missing: "
                     "unlock it by hand (docker swarm unlock)")
        return node_state
    ok, _ = _quiet(target, "docker swarm unlock >/dev/null", stdin=path.read_text().strip() + "\n")
    factcache.invalidate(target)  # facts read before (swarm state, docker info) are stale now
    _, node_state = _quiet(target, "docker info --format '{{.Swarm.LocalNodeState}}'")
    logger.info(f"{target.print_prefix}locked manager unlocked with {path}: state {node_state}")
    return node_state


def update_args(spec: LabSpec, cluster_spec: dict) -> list[str]:
    """`docker swarm update` arguments that make the cluster's options the spec's."""
    sw = spec.swarm
    args: list[str] = []
    if bool((cluster_spec.get("EncryptionConfig") or {}).get("AutoLockManagers")) != sw.autolock:
        args.append(f"--autolock={'true' if sw.autolock else 'false'}")
    if sw.cert_expiry is not None:
        have = (cluster_spec.get("CAConfig") or {}).get("NodeCertExpiry")
        if have != duration_seconds(sw.cert_expiry) * NS:
            args += ["--cert-expiry", sw.cert_expiry]
    if sw.dispatcher_heartbeat is not None:
        have = (cluster_spec.get("Dispatcher") or {}).get("HeartbeatPeriod")
        if have != duration_seconds(sw.dispatcher_heartbeat) * NS:
            args += ["--dispatcher-heartbeat", sw.dispatcher_heartbeat]
    if sw.task_history_limit is not None:
        have = (cluster_spec.get("Orchestration") or {}).get("TaskHistoryRetentionLimit")
        if have != sw.task_history_limit:
            args += ["--task-history-limit", str(sw.task_history_limit)]
    return args


def init_args(spec: LabSpec) -> list[str]:
    """`docker swarm init` arguments for the spec's options (a new swarm starts with them)."""
    sw = spec.swarm
    args: list[str] = []
    if sw.autolock:
        args.append("--autolock")
    if sw.cert_expiry:
        args += ["--cert-expiry", sw.cert_expiry]
    if sw.dispatcher_heartbeat:
        args += ["--dispatcher-heartbeat", sw.dispatcher_heartbeat]
    if sw.task_history_limit is not None:
        args += ["--task-history-limit", str(sw.task_history_limit)]
    if sw.data_path_addr:
        args += ["--data-path-addr", sw.data_path_addr]
    return args


@operation()
def swarm_options(is_first: bool):
    """On the first manager: the spec's swarm options (`docker swarm update` when one differs),
    the unlock key saved once (and after a change or rotation)."""
    if not is_first:
        host.noop("not the first manager")
        return
    from swarmlab.provision.context import lab_spec

    spec = lab_spec()
    info = host.get_fact(SwarmInfo)
    active = from_swarm(info).active
    cluster_spec = (info.get("Cluster") or {}).get("Spec") or {}
    args = update_args(spec, cluster_spec) if active and cluster_spec else []
    if args:
        # --autolock=true prints the key: its stdout never reaches pyinfra's output
        yield argv("docker", "swarm", "update", *args) + " >/dev/null"
    if not spec.swarm.autolock:
        if not args:
            host.noop("swarm options as the spec says (no autolock)")
        return
    rotate = spec.swarm.rotate_unlock_key and active
    if rotate:
        yield argv("docker", "swarm", "unlock-key", "--rotate", "-q") + " >/dev/null"
    path = key_path(spec)
    if rotate or args or not active or not _key_saved(host, path):
        def _save(state, host) -> bool:
            return save_key(host, path)

        yield FunctionCommand(_save, (), {})
    else:
        host.noop(f"swarm options as the spec says; unlock key in {path}")
