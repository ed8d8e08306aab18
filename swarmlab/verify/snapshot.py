"""Read-only commands many checks share, run once per host in one SSH command at session start.

Each check still asks for the exact command it asserts on (`snap.check_output(NAT_RULES)`), so a
broken state fails the same check as before; only the round trips are shared. Commands that see
state a workload changes (rules during a published port) stay live on the host.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from swarmlab.model.swarm_state import INFO_COMMAND
from swarmlab.provision.facts import KERNEL_MARKERS, KernelModules
from swarmlab.provision.kernel import MODULES_FILE, SYSCTL_FILE

NAT_RULES = "iptables -w 90 -t nat -S"
FILTER_RULES = "iptables -w 90 -t filter -S"
INPUT_RULES = "iptables -w 90 -t filter -S INPUT"
ADDRESSES = "ip -j -4 addr show"
DEFAULT_ROUTES = "ip -j route show default"
DAEMON_JSON = "cat /etc/docker/daemon.json"
BRIDGE_IPAM = "docker network inspect bridge --format '{{json .IPAM.Config}}'"
GWBRIDGE_IPAM = "docker network inspect docker_gwbridge --format '{{json .IPAM.Config}}'"
SERVER_VERSION = "docker version --format '{{.Server.Version}}'"
BUILDX_VERSION = "docker buildx version"
COMPOSE_VERSION = "docker compose version --short"
UFW_STATUS = "ufw status verbose"
UFW_ADDED = "ufw show added"
UFW_CONF = "cat /etc/ufw/ufw.conf"
NFT_TABLE = "nft list table inet swarmlab"
SYSCTL_CONF = f"cat {SYSCTL_FILE}"
MODULES_CONF = f"cat {MODULES_FILE}"
KERNEL_MODULES = KernelModules().command()  # "<module> loaded|loadable|missing" lines

# the fixed reads of swarmlab.verify.cis.collect (the CIS checks; its other reads depend on these)
SECURITY_READS = (
    "systemctl show -p MainPID --value docker.service",
    "systemctl show -p FragmentPath --value docker.service",
    "systemctl show -p FragmentPath --value docker.socket",
    "docker network inspect bridge --format '{{json .Options}}'",
    "ss -Hltn 'sport = :2377'",
    KERNEL_MODULES,
)

COMMANDS: tuple[str, ...] = (
    NAT_RULES, FILTER_RULES, INPUT_RULES, ADDRESSES, DEFAULT_ROUTES, DAEMON_JSON, BRIDGE_IPAM,
    GWBRIDGE_IPAM, SERVER_VERSION, BUILDX_VERSION, COMPOSE_VERSION, INFO_COMMAND, UFW_STATUS,
    UFW_ADDED, UFW_CONF, NFT_TABLE, SYSCTL_CONF, MODULES_CONF, *KERNEL_MARKERS.values(),
    *SECURITY_READS,
)

_MARK = "@@swarmlab-snapshot"


def script(commands: tuple[str, ...] = COMMANDS) -> str:
    """One shell that runs every command in turn, each framed by markers with its exit code
    (stdout and stderr kept apart: stderr goes to a temp file shown after the output; a
    newline before each marker, so output without a final newline never hides one)."""
    parts = ['e=$(mktemp); trap \'rm -f "$e"\' EXIT']
    for i, command in enumerate(commands):
        parts.append(
            f"echo '{_MARK} {i}'; ( {command} ) 2>\"$e\"; r=$?; "
            f"echo; echo '{_MARK}-err'; cat \"$e\"; echo; echo \"{_MARK}-rc $r\""
        )
    return f"sh -c {shlex.quote('; '.join(parts))}"


@dataclass(frozen=True)
class Result:
    """What testinfra's CommandResult offers the checks: rc, stdout, stderr."""

    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.rc == 0


_FRAME = re.compile(
    rf"^{_MARK} (\d+)\n(.*?)^{_MARK}-err\n(.*?)^{_MARK}-rc (\d+)$", re.S | re.M
)


def parse(output: str, commands: tuple[str, ...] = COMMANDS) -> dict[str, Result]:
    """command -> Result from the script's output (a command missing from it is absent)."""
    results = {}
    for m in _FRAME.finditer(output):
        command = commands[int(m[1])]
        results[command] = Result(command, int(m[4]), m[2][:-1], m[3][:-1])
    return results


class Snapshot:
    """The shared commands' results on one host, read once; `run`/`check_output` like a
    testinfra host, for these commands only."""

    def __init__(self, name: str, results: dict[str, Result], error: str = ""):
        self.name = name
        self.results = results
        self.error = error  # why the snapshot could not be read (its checks fail with it)

    @classmethod
    def take(cls, name: str, host) -> Snapshot:
        try:
            return cls(name, parse(host.check_output(script())))
        except (AssertionError, RuntimeError) as e:  # a failed script; SSH lost (testinfra: 255)
            return cls(name, {}, f"{type(e).__name__}: {str(e)[:500]}")

    def run(self, command: str) -> Result:
        assert not self.error, f"could not read {self.name}: {self.error}"
        if command not in self.results:
            raise KeyError(f"{command!r} is not in the snapshot of {self.name} (add it to COMMANDS)")
        return self.results[command]

    def check_output(self, command: str) -> str:
        result = self.run(command)
        assert result.rc == 0, (
            f"{self.name}: `{command}` failed (exit {result.rc}): {result.stderr.strip()[:300]}"
        )
        return result.stdout.strip()

    def lines(self, command: str) -> list[str]:
        return self.check_output(command).splitlines()
