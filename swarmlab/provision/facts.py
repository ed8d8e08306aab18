"""pyinfra facts swarmlab reads from hosts."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase
from pyinfra.api.facts import ShortFactBase
from pyinfra.facts.docker import DockerNetworks

# module -> a test that is true when the feature is in the running kernel (loaded or built in)
KERNEL_MARKERS: dict[str, str] = {
    "overlay": "grep -qw overlay /proc/filesystems",
    "br_netfilter": "[ -d /proc/sys/net/bridge ]",
    "vxlan": "[ -d /sys/module/vxlan ]",
    "ip_vs": "[ -e /proc/net/ip_vs ]",
    "xt_ipvs": "[ -d /sys/module/xt_ipvs ]",
    "esp4": "[ -d /sys/module/esp4 ] || zcat /proc/config.gz 2>/dev/null | grep -q '^CONFIG_INET_ESP=y'",
}


class KernelModules(FactBase):
    """module -> "loaded" | "loadable" | "missing" for the modules Docker and swarm use.

    "loaded" includes built-in features; "loadable" means modprobe can load it now.
    """

    default = dict

    def command(self) -> str:
        checks = " ".join(
            f"if {test}; then echo '{m} loaded'; "
            f"elif modprobe -n {m} >/dev/null 2>&1; then echo '{m} loadable'; "
            f"else echo '{m} missing'; fi;"
            for m, test in KERNEL_MARKERS.items()
        )
        return checks

    def process(self, output):
        return dict(line.split(None, 1) for line in output if " " in line)


class SwarmNodes(FactBase):
    """`docker node inspect` of every node a manager sees ([] elsewhere)."""

    def requires_command(self, *args, **kwargs) -> str:
        return "docker"

    default = list

    def command(self) -> str:
        return (
            "docker node ls -q 2>/dev/null | xargs -r docker node inspect --format '{{json .}}'"
        )

    def process(self, output):
        return [json.loads(line) for line in output if line.startswith("{")]


class OverlayNetworks(ShortFactBase):
    """name -> inspect data for the overlay networks a manager sees (pyinfra's DockerNetworks,
    every network's `docker network inspect` in one command, filtered here)."""

    fact = DockerNetworks

    def process_data(self, data):
        return {n["Name"]: n for n in data or [] if n.get("Driver") == "overlay"}


# shell printing `started=<epoch seconds>` of the running docker.service (nothing when stopped)
DOCKERD_STARTED = (
    "t=$(systemctl show -p ExecMainStartTimestamp --value docker.service 2>/dev/null); "
    '[ -n "$t" ] && echo started=$(date -d "$t" +%s); '
)


class DockerDaemonState(FactBase):
    """The running dockerd beside its daemon.json, in one read: `docker info` as JSON ("info",
    {} when the daemon does not answer), daemon.json's mtime, the daemon's start time (epoch
    seconds), the docker unit's own ExecStart (its fragment file, not drop-ins) and the running
    main dockerd's arguments.

    Read by the deploy (restart when they differ; swarm state; the TLS listener) and by the
    verification suite alike.
    """

    default = dict

    def command(self) -> str:
        return (
            "echo mtime=$(stat -c %Y /etc/docker/daemon.json 2>/dev/null); "
            + DOCKERD_STARTED
            + "f=$(systemctl show -p FragmentPath --value docker.service 2>/dev/null); "
            '[ -n "$f" ] && sed -n "s/^ExecStart=\\(..*\\)$/execstart=\\1/p" "$f" | tail -n 1; '
            "pid=$(systemctl show -p MainPID --value docker.service 2>/dev/null); "
            '[ -n "$pid" ] && [ "$pid" != 0 ] && echo "args=$(tr "\\0" " " < /proc/$pid/cmdline)"; '
            "printf info=; docker info --format '{{json .}}' 2>/dev/null; echo; true"
        )

    def process(self, output):
        data = dict(line.split("=", 1) for line in output if "=" in line)
        info = data.get("info", "").strip()
        return {
            "info": json.loads(info) if info.startswith("{") else {},
            "mtime": int(data["mtime"]) if data.get("mtime", "").strip().isdigit() else None,
            "started": int(data["started"]) if data.get("started", "").strip().isdigit() else None,
            "execstart": data.get("execstart", "").strip(),
            "args": data.get("args", "").split(),
        }


class SwarmInfo(ShortFactBase):
    """`docker info`'s Swarm section ({} when docker is not there or not running); read it with
    `swarmlab.model.swarm_state.from_swarm`, the parser the verify suite uses too."""

    fact = DockerDaemonState

    def process_data(self, data):
        return (data.get("info") or {}).get("Swarm") or {}


class DockerdRuntime(ShortFactBase):
    """The docker unit's own ExecStart, the running main dockerd's arguments and start time."""

    fact = DockerDaemonState

    def process_data(self, data):
        return {"execstart": data.get("execstart", ""), "args": data.get("args") or [],
                "started": data.get("started")}


class UnitActiveState(FactBase):
    """unit -> `systemctl is-failed` answer (failed, active, inactive, ...) for each unit."""

    default = dict

    def command(self, units: list[str]) -> str:
        return "; ".join(
            f"echo {shlex.quote(u)} $(systemctl is-failed {shlex.quote(u)} 2>/dev/null)" for u in units
        )

    def process(self, output):
        return dict(line.split(None, 1) for line in output if " " in line.strip())


class NftTable(FactBase):
    """`nft list table inet swarmlab` as text, one rule per line, stripped ("" when absent)."""

    default = str

    def command(self) -> str:
        return "nft list table inet swarmlab 2>/dev/null || true"

    def process(self, output):
        return "\n".join(line.strip() for line in output)
