"""Node images for the container lab: a bare systemd machine with sshd, python3 and sudo.

Debian images are built offline-friendly with debootstrap and `docker import`ed; the tag
carries a hash of everything that shapes the image, so an unchanged recipe is never rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmlab.containerlab import docker_cli
from swarmlab.control.progress import Throttle, debootstrap_stage, run_streamed
from swarmlab.model.distros import DISTROS

MIRROR = os.environ.get("SWARMLAB_MIRROR", "http://deb.debian.org/debian")
IMAGE_REPO = "swarmlab/node"
NODE_USER = "lab"  # the non-root sudo user pyinfra connects as
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "python3",
    "iproute2", "ca-certificates", "netbase",
)

# Commands run in the rootfs after debootstrap (chroot). Part of the content hash.
SETUP_SCRIPT = f"""
set -eu
useradd --create-home --shell /bin/bash {NODE_USER}
echo '{NODE_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{NODE_USER}
chmod 0440 /etc/sudoers.d/{NODE_USER}
install -d -m 0700 -o {NODE_USER} -g {NODE_USER} /home/{NODE_USER}/.ssh
# fresh host keys per node, made at first boot
rm -f /etc/ssh/ssh_host_*
u=sshd; [ -e /lib/systemd/system/ssh.service ] || [ -e /usr/lib/systemd/system/ssh.service ] && u=ssh
mkdir -p /etc/systemd/system/$u.service.d
printf '[Service]\\nExecStartPre=\\nExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t\\n' \
  > /etc/systemd/system/$u.service.d/keygen.conf
systemctl enable $u.service
# a container has no consoles or udev to wait for
systemctl mask getty@tty1.service console-getty.service systemd-udevd.service \
  systemd-udev-trigger.service systemd-modules-load.service sys-kernel-config.mount \
  systemd-firstboot.service systemd-remount-fs.service
[ -d /etc/apt/apt.conf.d ] && echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/90swarmlab-norecommends
: > /etc/machine-id
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
"""

NODE_INIT = "/sbin/init"
SWARMLAB_INIT = "/usr/local/sbin/swarmlab-init"
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")

# systemd >= 258 refuses the cgroup v1 hierarchy. On a host with the hybrid layout (v1
# controllers, cgroup2 at /sys/fs/cgroup/unified) this init gives systemd the container's own
# cgroup2 directory as /sys/fs/cgroup, in a new cgroup namespace; on a cgroup v2 host it only
# starts systemd.
UNIFIED_CGROUP_INIT = f"""
cat > {SWARMLAB_INIT} <<'INIT'
#!/bin/sh
# swarmlab node init: this systemd runs only on the unified cgroup hierarchy (cgroup v2)
set -eu
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  if [ ! -d /sys/fs/cgroup/unified ]; then
    echo "swarmlab-init: the host mounts no cgroup2 hierarchy; this systemd needs one" >&2
    exit 1
  fi
  exec unshare --cgroup /bin/sh -c \\
    'umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec {NODE_INIT}'
fi
exec {NODE_INIT}
INIT
chmod 0755 {SWARMLAB_INIT}
"""

# This machine's Debian mirror serves forky with a Release file past its Valid-Until date, and
# apt refuses such a suite. The node image (never a host the deploy provisions) skips that
# check for this suite's source line only.
EXPIRED_RELEASE_SOURCES = """
sed -i -e 's|^deb |deb [check-valid-until=no] |' \\
  -e '1i # swarmlab node image: the mirror serves an expired Release file for this suite' \\
  /etc/apt/sources.list
"""


@dataclass(frozen=True)
class SuiteRecipe:
    """How one Debian suite's node image differs from the common recipe."""

    setup: str = ""  # extra chroot commands after SETUP_SCRIPT (part of the content hash)
    init: str = NODE_INIT  # the image's CMD
    debootstrap_script: str = ""  # script to use where this host's debootstrap lacks the suite


SUITES: dict[str, SuiteRecipe] = {
    "forky": SuiteRecipe(
        setup=UNIFIED_CGROUP_INIT + EXPIRED_RELEASE_SOURCES,  # systemd 262
        init=SWARMLAB_INIT,
        debootstrap_script="sid",  # Debian 12's debootstrap has no forky script
    ),
}

# Ubuntu and Manjaro nodes start from their registry base images (needs a reachable registry;
# used by the nightly workflow, not on machines without one).
DOCKERFILE = """FROM {base}
RUN {install}
COPY setup.sh /usr/local/sbin/swarmlab-node-setup
RUN sh -e /usr/local/sbin/swarmlab-node-setup
ENV container=docker
CMD ["/sbin/init"]
"""
BASE_IMAGE_INSTALL = {
    "apt": "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
    + " ".join(NODE_PACKAGES),
    "pacman": "pacman -Syu --noconfirm --needed systemd openssh sudo python iproute2 ca-certificates",
}


@dataclass(frozen=True)
class NodeImage:
    """A node image recipe for one distro."""

    distro: str

    @property
    def base(self) -> str:
        return DISTROS[self.distro].node_image_base

    @property
    def debootstrapped(self) -> bool:
        return self.base.startswith("debootstrap:")

    @property
    def suite(self) -> str:
        return self.base.split(":", 1)[1]

    @property
    def recipe(self) -> SuiteRecipe:
        """Suite-specific additions (none for most suites and for registry-based images)."""
        return SUITES.get(self.suite, SuiteRecipe()) if self.debootstrapped else SuiteRecipe()

    @property
    def dockerfile(self) -> str:
        """For distros built from a registry base image (Ubuntu, Manjaro)."""
        return DOCKERFILE.format(base=self.base, install=BASE_IMAGE_INSTALL[DISTROS[self.distro].family])

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        recipe = self.suite if self.debootstrapped else self.dockerfile
        parts = [recipe, MIRROR, ",".join(NODE_PACKAGES), SETUP_SCRIPT]
        if self.recipe != SuiteRecipe():  # suites without additions keep their earlier hash
            parts += [self.recipe.setup, self.recipe.init]
        for part in parts:
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.distro}-{self.content_hash}"


class ImageError(RuntimeError):
    """The node image cannot be built here."""


def ensure_image(image: NodeImage, log: Callable[[str], None] = print) -> bool:
    """Build the image unless a tag with the same content hash exists. True if built.

    debootstrap, chroot and the rootfs tarball need root: as another user they run through
    `sudo -n` (passwordless sudo, as on CI runners); `docker import` runs as the caller.
    """
    if docker_cli.image_exists(image.tag):
        return False
    if not image.debootstrapped:
        return _build_from_base(image, log)
    if shutil.which("debootstrap", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
        raise ImageError(
            "debootstrap is not installed; it builds the node image. Fix: run `make lab` as root "
            "(scripts/host-setup.sh installs it), or: sudo apt-get install -y debootstrap"
        )
    check_root()
    tmp = tempfile.mkdtemp(prefix="swarmlab-rootfs-")
    rootfs = Path(tmp) / "rootfs"
    try:
        log(f"debootstrap {image.suite} from {MIRROR} (a few minutes on a first run)")
        start = time.monotonic()
        _run(as_root(debootstrap_command(image, rootfs)), log, "debootstrap", debootstrap_stage)
        _run(as_root(["chroot", str(rootfs), "/bin/sh", "-c", SETUP_SCRIPT + image.recipe.setup]),
             log, "node setup (chroot)")
        tar = Path(tmp) / "rootfs.tar"
        _run(as_root(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."]),
             log, "rootfs tarball")
        _run([
            "docker", "import",
            "-c", "ENV container=docker",
            "-c", f'CMD ["{image.recipe.init}"]',
            "--message", f"swarmlab node {image.distro} {image.content_hash}",
            str(tar), image.tag,
        ], log, "docker import")
        log(f"built {image.tag} ({time.monotonic() - start:.0f} s)")
    finally:
        subprocess.run(as_root(["rm", "-rf", "--one-file-system", tmp]), capture_output=True)
    return True


def debootstrap_command(image: NodeImage, rootfs: Path) -> list[str]:
    """debootstrap's argv; names a related suite's script where this host's has none."""
    cmd = [
        "debootstrap", "--variant=minbase", f"--include={','.join(NODE_PACKAGES)}",
        image.suite, str(rootfs), MIRROR,
    ]
    fallback = image.recipe.debootstrap_script
    if fallback and not (DEBOOTSTRAP_SCRIPTS / image.suite).exists():
        cmd.append(str(DEBOOTSTRAP_SCRIPTS / fallback))
    return cmd


def as_root(cmd: list[str]) -> list[str]:
    """The command as root: unchanged for root, else through non-interactive sudo."""
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def check_root() -> None:
    """Raise ImageError unless this process is root or has passwordless sudo."""
    if os.geteuid() == 0:
        return
    sudo_ok = shutil.which("sudo") is not None and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True
    ).returncode == 0
    if not sudo_ok:
        raise ImageError(
            "building a node image needs root (debootstrap, chroot): run as root or as a user "
            "with passwordless sudo"
        )


def _build_from_base(image: NodeImage, log: Callable[[str], None]) -> bool:
    log(f"docker build from {image.base} (needs a reachable registry)")
    with tempfile.TemporaryDirectory(prefix="swarmlab-image-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(image.dockerfile)
        (Path(tmp) / "setup.sh").write_text(SETUP_SCRIPT)
        try:
            _run(["docker", "build", "-t", image.tag, tmp], log, "docker build")
        except ImageError as err:
            raise ImageError(
                f"{image.distro}: building the node image from {image.base} failed; it needs a "
                f"reachable container registry (the container lab here builds the debootstrap "
                f"distros offline):\n{err}"
            ) from None
    return True


def _run(cmd: list[str], log: Callable[[str], None], label: str,
         stage_of: Callable[[str], str | None] = lambda _: None) -> None:
    """Run a build step, saying `label: stage (N s)` through `log` while it runs (throttled)."""
    result = run_streamed(cmd, label, log, stage_of=stage_of, throttle=Throttle(label))
    if result.returncode != 0:
        tail = "\n".join(result.tail[-15:])
        raise ImageError(f"{' '.join(cmd[:3])} ... failed (exit {result.returncode}):\n{tail}")
