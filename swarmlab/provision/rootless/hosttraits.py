"""The host traits a rootless daemon depends on: container or not, kernel (the storage driver),
the userns sysctl, and AppArmor (Ubuntu's userns restriction needs a profile for rootlesskit).

Hand-written: pyinfra has no fact for these traits and no AppArmor operation; the profile
itself is a `files.template`.
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase
from pyinfra.operations import files, server

from swarmlab.model.distros import ROOTLESS_APPARMOR, ROOTLESS_NATIVE_OVERLAY_KERNEL
from swarmlab.provision.context import template
from swarmlab.provision.shell import argv
from swarmlab.provision.shell import line as shell_line

USERNS_CLONE = "kernel.unprivileged_userns_clone"  # Debian/Arch kernels only


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string; (0, 0) when it cannot be read."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def rootless_storage_driver(container: str, kernel: str) -> str:
    """The storage driver a rootless daemon uses on this host.

    In a container (the container lab's nodes) the user's data dir sits on the node's own
    overlay root, where overlayfs cannot stack and /dev/fuse is absent: vfs. On hosts, overlay2
    from kernel 5.11 on (rootless overlayfs), fuse-overlayfs below.
    """
    if container and container != "none":
        return "vfs"
    if kernel_version(kernel) < ROOTLESS_NATIVE_OVERLAY_KERNEL:
        return "fuse-overlayfs"
    return "overlay2"


def apparmor_profile_path(binary: str) -> str:
    """swarmlab's profile file for a binary, named after its path (Docker's docs style)."""
    return "/etc/apparmor.d/swarmlab." + binary.strip("/").replace("/", ".")


def needs_apparmor_profile(distro: str, facts: dict, own_profile: str) -> bool:
    """True where AppArmor restricts user namespaces and no other profile covers rootlesskit."""
    if distro not in ROOTLESS_APPARMOR or not facts.get("apparmor"):
        return False
    return not [p for p in facts.get("apparmor_covering", []) if p != own_profile]


def key_values(output: list[str]) -> dict:
    """`key=value` lines of a fact's output as a dict."""
    return dict(line.split("=", 1) for line in output if "=" in line)


class RootlessHost(FactBase):
    """Host traits the rootless setup depends on (container, kernel, userns sysctl, AppArmor)."""

    default = dict

    def command(self, rootlesskit: str) -> str:
        # an attachment line ("profile NAME /path flags=(...) {" or "/path {"), not a rule
        escaped = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", rootlesskit)  # POSIX ERE
        pattern = "^[^#]*" + escaped + "[^,]*[{][[:space:]]*$"
        return (
            "echo container=$(systemd-detect-virt --container 2>/dev/null || true); "
            "echo kernel=$(uname -r); "
            f"[ -f /proc/sys/{USERNS_CLONE.replace('.', '/')} ] && echo userns_clone=1; "
            "[ -d /sys/kernel/security/apparmor ] && echo apparmor=1; "
            "echo apparmor_covering=$(grep -lsE "
            f"{shlex.quote(pattern)} /etc/apparmor.d/* 2>/dev/null | tr '\\n' ' '); true"
        )

    def process(self, output):
        data = key_values(output)
        data["apparmor_covering"] = data.get("apparmor_covering", "").split()
        return data



def rootless_apparmor(distro: str, rootlesskit: str, facts: dict) -> None:
    """swarmlab's AppArmor profile for rootlesskit where needed; dropped once another covers it."""
    own = apparmor_profile_path(rootlesskit)
    if needs_apparmor_profile(distro, facts, own):
        profile = files.template(
            name=f"AppArmor profile for {rootlesskit} (userns)",
            src=template("rootlesskit.apparmor.j2"),
            dest=own,
            mode="0644",
            path=rootlesskit,
            profile_name=own.rsplit("/", 1)[-1],
        )
        server.shell(name="load the rootlesskit AppArmor profile",
                     commands=[argv("apparmor_parser", "-r", own)], _if=profile.did_change)
    elif own in facts.get("apparmor_covering", []):
        # another profile (the apparmor package's) now covers the path: two would conflict
        server.shell(name="drop swarmlab's rootlesskit AppArmor profile",
                     commands=[shell_line(argv("apparmor_parser", "-R", own), "|| true"),
                               argv("rm", "-f", own)])


