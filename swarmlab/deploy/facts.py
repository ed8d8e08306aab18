"""pyinfra facts swarmlab reads from hosts."""

from __future__ import annotations

import json

from pyinfra.api import FactBase


class UfwAddedRules(FactBase):
    """Rules ufw has been told to add (works while ufw is inactive), without `ufw `."""

    def requires_command(self, *args, **kwargs) -> str:
        return "ufw"

    default = list

    def command(self) -> str:
        return "ufw show added"

    def process(self, output):
        return [line[4:].strip() for line in output if line.startswith("ufw ")]


class UfwStatus(FactBase):
    """True when ufw is active."""

    def requires_command(self, *args, **kwargs) -> str:
        return "ufw"

    default = bool

    def command(self) -> str:
        return "ufw status"

    def process(self, output):
        return any(line.strip() == "Status: active" for line in output)


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


class SwarmInfo(FactBase):
    """`docker info`'s Swarm section ({} when docker is not there or not running)."""

    def requires_command(self, *args, **kwargs) -> str:
        return "docker"

    default = dict

    def command(self) -> str:
        return "docker info --format '{{json .Swarm}}' 2>/dev/null || true"

    def process(self, output):
        text = "".join(output).strip()
        return json.loads(text) if text.startswith("{") else {}


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


class OverlayNetworks(FactBase):
    """name -> inspect data for the swarm-scoped overlay networks a manager sees."""

    def requires_command(self, *args, **kwargs) -> str:
        return "docker"

    default = dict

    def command(self) -> str:
        return (
            "docker network ls -q --filter driver=overlay 2>/dev/null "
            "| xargs -r docker network inspect --format '{{json .}}'"
        )

    def process(self, output):
        nets = [json.loads(line) for line in output if line.startswith("{")]
        return {n["Name"]: n for n in nets}
