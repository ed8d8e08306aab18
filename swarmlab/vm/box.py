"""Vagrant boxes for the libvirt provider, built here: debootstrap -> a bootable qcow2 disk.

No box can be downloaded on many machines (and none is published for swarmlab), so the box is
made like the container lab's node image: debootstrap of the distro's suite with Debian's own
kernel and an initramfs, the `vagrant` user with Vagrant's insecure key (Vagrant swaps it for a
fresh key at the first `vagrant up`), then an MBR disk with one ext4 partition that extlinux
boots. The box records the hash of everything that shapes it; an unchanged recipe is never
rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmlab.containerlab.image import MIRROR, _run, as_root, check_root
from swarmlab.control.progress import debootstrap_stage
from swarmlab.model.distros import DISTROS

BOX_PREFIX = "swarmlab"
PART_START = 2048  # sectors: the first partition starts at 1 MiB
DISK_GIB = 20  # the guest's virtual disk (sparse: the box holds only what is written)
STAMP = "swarmlab-box.json"  # inside the box: what it was built from
VAGRANT_USER = "vagrant"
VAGRANT_KEYS = (  # Vagrant's insecure public key(s), shipped with Vagrant itself
    "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/vagrant-*/keys/vagrant.pub",
)
EXTLINUX_MBR = (Path("/usr/lib/EXTLINUX/mbr.bin"), Path("/usr/lib/syslinux/mbr/mbr.bin"))
# what the host needs to build a box (Debian package names)
BUILD_TOOLS = {
    "debootstrap": "debootstrap", "extlinux": "extlinux", "sfdisk": "fdisk",
    "qemu-img": "qemu-utils", "mkfs.ext4": "e2fsprogs", "losetup": "mount",
}
BOX_PACKAGES = (
    "linux-image-amd64", "initramfs-tools", "zstd", "systemd", "systemd-sysv", "systemd-resolved",
    "udev", "dbus", "kmod", "e2fsprogs", "openssh-server", "sudo", "python3", "iproute2",
    "ca-certificates", "netbase",
)
# the guest's kernel command line: eth0/eth1 names (the spec's network.interface), a serial
# console (the VM's boot log), no CPU vulnerability mitigations: a lab VM, and under TCG the
# SRSO return thunk was seen to double-fault the guest kernel at boot (and mitigations cost much
# time in software emulation)
KERNEL_ARGS = ("root=LABEL=swarmlab-root rw net.ifnames=0 biosdevname=0 console=ttyS0,115200 console=tty0 "
               "mitigations=off")

# chroot commands after debootstrap (part of the content hash); {key} is Vagrant's public key
SETUP_SCRIPT = """
set -eu
echo swarmlab > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 swarmlab\n' > /etc/hosts
printf 'LABEL=swarmlab-root / ext4 errors=remount-ro 0 1\\n' > /etc/fstab
useradd --create-home --shell /bin/bash {user}
echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{user}
chmod 0440 /etc/sudoers.d/{user}
install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh
printf '%s\\n' '{key}' > /home/{user}/.ssh/authorized_keys
chown {user}:{user} /home/{user}/.ssh/authorized_keys
chmod 0600 /home/{user}/.ssh/authorized_keys
# fresh host keys per VM, made at first boot: ed25519 and ECDSA only (an RSA key takes long
# to generate without KVM)
rm -f /etc/ssh/ssh_host_*
cat > /usr/local/sbin/swarmlab-hostkeys <<'KEYS'
#!/bin/sh
set -e
for t in ed25519 ecdsa; do
  [ -e /etc/ssh/ssh_host_${{t}}_key ] || ssh-keygen -q -N '' -t $t -f /etc/ssh/ssh_host_${{t}}_key
done
KEYS
chmod 0755 /usr/local/sbin/swarmlab-hostkeys
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\\nExecStartPre=\\nExecStartPre=%s\\nExecStartPre=/usr/sbin/sshd -t\\n' \\
  /usr/local/sbin/swarmlab-hostkeys > /etc/systemd/system/ssh.service.d/keygen.conf
printf 'UseDNS no\\nHostKey /etc/ssh/ssh_host_ed25519_key\\nHostKey /etc/ssh/ssh_host_ecdsa_key\\n' \\
  > /etc/ssh/sshd_config.d/10-swarmlab.conf
# Vagrant's management NIC (eth0) takes its address from the provider's DHCP; the lab NIC is
# the deploy's (netplan)
mkdir -p /etc/systemd/network
printf '[Match]\\nName=eth0\\n\\n[Network]\\nDHCP=ipv4\\n\\n[DHCPv4]\\nRouteMetric=1024\\n' \\
  > /etc/systemd/network/10-vagrant-mgmt.network
systemctl enable systemd-networkd.service systemd-resolved.service ssh.service
# no unattended apt runs in a lab VM: they would hold dpkg's lock while the deploy installs
systemctl mask apt-daily.service apt-daily-upgrade.service apt-daily.timer apt-daily-upgrade.timer
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/90swarmlab-norecommends
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
"""

EXTLINUX_CONF = """DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND {args}
"""

# the Vagrantfile inside the box: how vagrant-libvirt runs this disk
BOX_VAGRANTFILE = """Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
"""


class BoxError(RuntimeError):
    """The box cannot be built here."""


@dataclass(frozen=True)
class Box:
    """A libvirt box recipe for one Debian distro."""

    distro: str

    @property
    def suite(self) -> str:
        base = DISTROS[self.distro].node_image_base
        if not base.startswith("debootstrap:"):
            raise BoxError(f"{self.distro}: only Debian suites can be built into a box here "
                           f"(debootstrap); use a published box for it (`box:` in the spec)")
        return base.split(":", 1)[1]

    @property
    def name(self) -> str:
        """The box name to put in a spec node's `box:` (what `vagrant box add` registers)."""
        return f"{BOX_PREFIX}/{self.distro}"

    def setup_script(self, key: str) -> str:
        return SETUP_SCRIPT.format(user=VAGRANT_USER, key=key)

    def content_hash(self, key: str) -> str:
        h = hashlib.sha256()
        for part in (self.suite, MIRROR, ",".join(BOX_PACKAGES), self.setup_script(key),
                     EXTLINUX_CONF, KERNEL_ARGS, BOX_VAGRANTFILE, str(DISK_GIB)):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:12]


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def installed_dir(box: Box) -> Path | None:
    """The installed box's directory in Vagrant's box store (None: not installed)."""
    root = vagrant_home() / "boxes" / box.name.replace("/", "-VAGRANTSLASH-")
    for stamp in sorted(root.glob(f"*/libvirt/{STAMP}")) + sorted(root.glob(f"*/*/libvirt/{STAMP}")):
        return stamp.parent
    return None


def installed_stamp(box: Box) -> dict | None:
    """What the installed box of this name was built from (None: not installed, or not ours)."""
    where = installed_dir(box)
    try:
        return json.loads((where / STAMP).read_text()) if where else None
    except (OSError, ValueError):
        return None


def vagrant_public_key() -> str:
    """Vagrant's insecure public key, from the installed Vagrant."""
    for pattern in VAGRANT_KEYS:
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            return path.read_text().strip()
    raise BoxError("Vagrant's insecure public key (keys/vagrant.pub) was not found: install "
                   "vagrant first (make vm-lab does: scripts/host-setup.sh --vm)")


def missing_tools() -> list[str]:
    """Debian packages to install before a box can be built here."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    need = [pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool, path=path) is None]
    if not any(p.exists() for p in EXTLINUX_MBR):
        need.append("syslinux-common")
    return sorted(set(need))


def ensure_box(box: Box, log: Callable[[str], None] = print, force: bool = False) -> bool:
    """Build and add the box unless the installed one has the same content hash. True if built."""
    key = vagrant_public_key()
    digest = box.content_hash(key)
    stamp = installed_stamp(box)
    if not force and stamp and stamp.get("hash") == digest:
        return False
    need = missing_tools()
    if need:
        raise BoxError(f"building a box needs: {' '.join(need)}. Fix: apt-get install -y {' '.join(need)} "
                       "(or make vm-lab, which installs them)")
    check_root()
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="swarmlab-box-", dir=os.environ.get("SWARMLAB_BOX_TMP")))
    try:
        rootfs = tmp / "rootfs"
        log(f"debootstrap {box.suite} with Debian's kernel from {MIRROR} (a few minutes)")
        _run(as_root(["debootstrap", "--variant=minbase", f"--include={','.join(BOX_PACKAGES)}",
                      box.suite, str(rootfs), MIRROR]), log, "debootstrap", debootstrap_stage)
        _run(as_root(["chroot", str(rootfs), "/bin/sh", "-c", box.setup_script(key)]), log,
             "box setup (chroot)")
        disk = tmp / "disk.raw"
        log(f"disk image: {DISK_GIB} GiB sparse, one ext4 partition, extlinux")
        _make_disk(rootfs, disk, log)
        out = tmp / "box"
        out.mkdir()
        _run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(out / "box.img")], log, "qemu-img")
        disk.unlink()
        (out / "metadata.json").write_text(json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}) + "\n")
        (out / "Vagrantfile").write_text(BOX_VAGRANTFILE)
        # the kernel and initramfs beside the disk: the accelerator probe boots them (host.py)
        for name in ("vmlinuz", "initrd.img"):  # Debian's symlinks at / name the current kernel
            target = rootfs / os.readlink(rootfs / name).lstrip("/") if (rootfs / name).is_symlink() else None
            if target is None or not target.is_file():
                raise BoxError(f"the box has no /{name}: the kernel package did not install")
            _run(as_root(["install", "-m", "0644", str(target), str(out / name)]), log, "kernel")
        (out / STAMP).write_text(json.dumps(
            {"distro": box.distro, "suite": box.suite, "hash": digest, "kernel_args": KERNEL_ARGS}) + "\n")
        boxfile = tmp / "swarmlab.box"
        _run(["tar", "-C", str(out), "-cf", str(boxfile), "metadata.json", "Vagrantfile", STAMP,
              "vmlinuz", "initrd.img", "box.img"], log, "box archive")
        _remove_libvirt_base_volumes(box, log)
        _run(["vagrant", "box", "add", "--force", "--name", box.name, str(boxfile)], log, "vagrant box add")
        log(f"built box {box.name} {digest} ({time.monotonic() - start:.0f} s)")
    finally:
        subprocess.run(as_root(["rm", "-rf", "--one-file-system", str(tmp)]), capture_output=True)
    return True


def _make_disk(rootfs: Path, disk: Path, log: Callable[[str], None]) -> None:
    """An MBR disk image with one bootable ext4 partition holding `rootfs`, booted by extlinux.

    The partition is reached through a loop device at its offset (partition scanning of loop
    devices is not available everywhere); the MBR's boot code is written into the file.
    """
    with disk.open("wb") as fh:
        fh.truncate(DISK_GIB * 1024**3)
    subprocess.run(["sfdisk", "-q", str(disk)], input=f"label: dos\nstart={PART_START},type=L,bootable\n",
                   text=True, check=True)
    offset = PART_START * 512
    size = DISK_GIB * 1024**3 - offset
    loop = subprocess.run(as_root(["losetup", "--find", "--show", "--offset", str(offset),
                                   "--sizelimit", str(size), str(disk)]),
                          capture_output=True, text=True, check=True).stdout.strip()
    mnt = disk.parent / "mnt"
    mnt.mkdir(exist_ok=True)
    try:
        # extlinux reads ext4 without the 64bit feature only
        _run(as_root(["mkfs.ext4", "-q", "-F", "-O", "^64bit", "-L", "swarmlab-root", loop]), log, "mkfs")
        _run(as_root(["mount", loop, str(mnt)]), log, "mount")
        try:
            _run(as_root(["cp", "-a", f"{rootfs}/.", str(mnt)]), log, "copy rootfs")
            extdir = mnt / "boot" / "extlinux"
            _run(as_root(["mkdir", "-p", str(extdir)]), log, "extlinux")
            (extdir / "extlinux.conf").write_text(EXTLINUX_CONF.format(args=KERNEL_ARGS))
            _run(as_root(["extlinux", "--install", str(extdir)]), log, "extlinux")
        finally:
            subprocess.run(as_root(["umount", str(mnt)]), capture_output=True)
    finally:
        subprocess.run(as_root(["losetup", "-d", loop]), capture_output=True)
    mbr = next(p for p in EXTLINUX_MBR if p.exists())
    _run(["dd", f"if={mbr}", f"of={disk}", "bs=440", "count=1", "conv=notrunc"], log, "mbr")


def _remove_libvirt_base_volumes(box: Box, log: Callable[[str], None]) -> None:
    """vagrant-libvirt keeps a box's disk in the storage pool as a base volume and reuses it
    while one of that name exists: a rebuilt box must drop the old one."""
    prefix = box.name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    vols = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", "default", "--name"],
                          capture_output=True, text=True)
    for vol in vols.stdout.split() if vols.returncode == 0 else []:
        if vol.startswith(prefix):
            subprocess.run(["virsh", "-c", "qemu:///system", "vol-delete", vol, "--pool", "default"],
                           capture_output=True)
            log(f"removed the old base volume {vol} from libvirt's default pool")
