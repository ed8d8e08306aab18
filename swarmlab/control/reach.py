"""Is the lab there? One quick SSH round trip per node before a command talks to the nodes.

Each node answers with the port its sshd serves this connection on (`$SSH_CONNECTION` seen on
the node, so a forwarded port such as Vagrant's 2222 -> 22 reads as 22): the deploy's firewall
guard compares it with the spec's `firewall.ssh_port`. A node that does not answer is reported
with the last line of ssh's error, never a stack of objects or the remote script.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmlab.control.parallel import on_each
from swarmlab.control.sshconfig import write_ssh_config
from swarmlab.model.spec import LabSpec

CONNECT_TIMEOUT = 5  # seconds: ssh's ConnectTimeout for the check
PROBE_TRIES = 2
PROBE = 'set -- $SSH_CONNECTION; echo "swarmlab-port=$4"'  # no spec value in it


@dataclass(frozen=True)
class NodeReach:
    """One node's answer: `error` is None when it answered (`port`: its sshd's port)."""

    name: str
    address: str
    error: str | None = None
    port: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def last_line(text: str) -> str:
    """The last non-empty line of `text`, stripped (an SSH error's own words)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def short_error(err: BaseException) -> str:
    """One line for an exception from an SSH client: the stderr's last line when it carries a
    command result (testinfra raises one holding the whole remote script), else its message's."""
    for arg in err.args:
        stderr = getattr(arg, "stderr", None)
        if isinstance(stderr, str) and stderr.strip():
            return last_line(stderr)[:300]
    return (last_line(str(err)) or type(err).__name__)[:300]


def check(entries: list[tuple[str, Mapping[str, Any]]]) -> list[NodeReach]:
    """Every inventory entry `(name, host data)` checked at once, in their order."""
    if not entries:
        return []
    config = write_ssh_config(entries)
    try:
        return on_each(lambda entry: _probe(config, entry[0], str(entry[1]["ssh_hostname"])), entries)
    finally:
        config.unlink(missing_ok=True)


def _probe(config: Path, name: str, address: str, tries: int = PROBE_TRIES) -> NodeReach:
    """One node's answer; a node that did not answer is asked once more (a loaded machine or a
    software-emulated VM can miss one connect timeout)."""
    for _ in range(tries):
        reach = _probe_once(config, name, address)
        if reach.ok:
            break
    return reach


def _probe_once(config: Path, name: str, address: str) -> NodeReach:
    cmd = ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
           "-o", "ConnectionAttempts=1", name, PROBE]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=CONNECT_TIMEOUT * 4)
    except subprocess.TimeoutExpired:
        return NodeReach(name, address, f"no answer within {CONNECT_TIMEOUT * 4} s")
    except FileNotFoundError:
        return NodeReach(name, address, "no `ssh` client on this machine")
    if proc.returncode != 0:
        return NodeReach(name, address, last_line(proc.stderr) or f"ssh exited with {proc.returncode}")
    port = next((line.split("=", 1)[1] for line in proc.stdout.splitlines()
                 if line.startswith("swarmlab-port=")), "")
    return NodeReach(name, address, None, int(port) if port.isdigit() else None)


def firewall_cut(spec: LabSpec, spec_path: Path, answers: list[NodeReach]) -> str | None:
    """The refusal when the deploy's firewall would cut the SSH connection it runs on: a node
    answered on a port other than `firewall.ssh_port`, the one port the firewall keeps open."""
    if spec.firewall.backend == "none":
        return None
    keep = spec.firewall.ssh_port
    other = [r for r in answers if r.ok and r.port is not None and r.port != keep]
    if not other:
        return None
    ports = sorted({r.port for r in other if r.port is not None})
    shown = ", ".join(f"{r.name} on port {r.port}" for r in other)
    return (f"firewall.ssh_port is {keep}, but this deploy's SSH connection reaches {shown}: the "
            f"firewall (default deny incoming) would keep only port {keep} open and cut it. "
            f"Nothing was changed. Fix: set `firewall: {{ssh_port: {ports[0]}}}` in {spec_path} "
            f"(the port sshd serves you on), or connect on port {keep}")
