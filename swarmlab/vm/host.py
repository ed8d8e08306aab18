"""The VM host: libvirt's daemons, and which accelerator boots a guest here (KVM or TCG).

`vagrant up --provider=libvirt` needs libvirtd and virtlogd; on a machine whose PID 1 is not
systemd (containers, CI runners) nothing starts them, so swarmlab does. KVM is used where a KVM
guest really boots: some hosts expose /dev/kvm whose guests hang in early boot (nested
virtualization without the features a guest kernel probes), so the choice is made by booting
the box's own kernel once under each accelerator and caching the verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

LIBVIRT_URI = "qemu:///system"
QEMU = "qemu-system-x86_64"
PROBE_TIMEOUT = 40.0  # a TCG boot to the init panic takes ~6 s here; KVM that hangs never gets there
# the kernel reached userspace (and, with no real init in the initramfs, panicked there)
BOOTED = ("Attempted to kill init", "Kernel panic", "Run /bin/false as init process")
DRIVER_ENV = "SWARMLAB_LIBVIRT_DRIVER"  # kvm | qemu: skip the probe


class HostError(RuntimeError):
    """This machine cannot run the VM lab as it is."""


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", LIBVIRT_URI, *args], capture_output=True, text=True)


def libvirt_answers() -> bool:
    return shutil.which("virsh") is not None and virsh("version").returncode == 0


def ensure_libvirt(log: Callable[[str], None] = print) -> str:
    """libvirtd (and virtlogd) answering on qemu:///system; says how. Returns what was done."""
    if libvirt_answers():
        return "running"
    if shutil.which("libvirtd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
        raise HostError("libvirt is not installed. Fix: apt-get install -y libvirt-daemon-system "
                        "qemu-system-x86 vagrant-libvirt (make vm-lab does: scripts/host-setup.sh --vm)")
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "start", "virtlogd.socket", "libvirtd.service"], check=False)
        how = "started with systemctl"
    else:  # no init system: start the daemons ourselves, as dockerd is in scripts/host-setup.sh
        for daemon in ("virtlogd", "libvirtd"):
            if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
                subprocess.run([daemon, "-d"], check=False)
        how = "started (no systemd: virtlogd -d, libvirtd -d)"
    deadline = time.monotonic() + 30
    while not libvirt_answers():
        if time.monotonic() > deadline:
            raise HostError("libvirtd did not answer on qemu:///system within 30 s; see "
                            "`libvirtd --verbose` run in the foreground")
        time.sleep(0.5)
    log(f"libvirt {how}")
    return how


def probe_boot(accel: str, kernel: Path, initrd: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does the box's kernel boot to userspace under `accel` (kvm | tcg)?"""
    cmd = [QEMU, "-accel", accel, "-m", "512", "-nographic", "-no-reboot", "-nodefaults",
           "-serial", "stdio", "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "console=ttyS0 panic=-1 rdinit=/bin/false"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
    return any(mark in out for mark in BOOTED)


def choose_driver(kernel: Path, initrd: Path, cache: Path, log: Callable[[str], None] = print) -> str:
    """libvirt's domain type for the VMs: `kvm` where a KVM guest boots here, else `qemu` (TCG).

    `SWARMLAB_LIBVIRT_DRIVER` decides without a probe. The verdict is cached per host kernel,
    QEMU and guest kernel in `cache` (a JSON file).
    """
    given = os.environ.get(DRIVER_ENV, "")
    if given:
        if given not in ("kvm", "qemu"):
            raise HostError(f"{DRIVER_ENV}={given!r}: use kvm or qemu")
        log(f"libvirt driver {given} (from {DRIVER_ENV})")
        return given
    if shutil.which(QEMU) is None:
        raise HostError(f"{QEMU} is not installed. Fix: apt-get install -y qemu-system-x86")
    key = f"{os.uname().release}|{_qemu_version()}|{kernel.stat().st_size}"
    known = _read(cache)
    if known.get("key") == key and known.get("driver") in ("kvm", "qemu"):
        log(f"libvirt driver {known['driver']} ({known['why']}; cached)")
        return known["driver"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        driver, why = "qemu", "no usable /dev/kvm: TCG, software emulation"
    elif probe_boot("kvm", kernel, initrd):
        driver, why = "kvm", "a KVM guest boots here"
    elif probe_boot("tcg", kernel, initrd):
        driver, why = "qemu", f"a KVM guest does not boot here within {PROBE_TIMEOUT:.0f} s: TCG, software emulation"
    else:
        raise HostError(f"the box's kernel {kernel} booted under neither KVM nor TCG")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "driver": driver, "why": why}) + "\n")
    log(f"libvirt driver {driver} ({why})")
    return driver


def _qemu_version() -> str:
    proc = subprocess.run([QEMU, "--version"], capture_output=True, text=True)
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
