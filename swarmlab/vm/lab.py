"""The VM lab: the spec's nodes as libvirt VMs through the Vagrantfile, then the same deploy and
verification as every other lab (the inventory reads the VMs' SSH settings from Vagrant).

Vagrant's machine state goes to the lab's state directory (VAGRANT_DOTFILE_PATH), the guests'
serial consoles to `<state>/console/<node>.log`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from swarmlab.control.inventory import CONNECTION_FILE, vagrant_root
from swarmlab.control.progress import Throttle, run_streamed
from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir, state_root
from swarmlab.vm import box as boxes
from swarmlab.vm import host

PROVIDER = "libvirt"
UP_TRIES = 2  # `vagrant up` again brings up only the machines the first one did not
# vagrant's lines -> the stage a user is told about
VAGRANT_STAGES = (
    ("Uploading base box image", "uploading the box to libvirt's pool"),
    ("Creating domain", "creating the VM"), ("Starting domain", "starting the VM"),
    ("Waiting for domain to get an IP", "booting (waiting for DHCP)"),
    ("Waiting for machine to boot", "booting (waiting for SSH)"),
    ("Inserting generated public key", "replacing Vagrant's insecure key"),
    ("Machine booted and ready", "ready"), ("Setting hostname", "setting the hostname"),
    ("Destroying", "destroying"), ("Halting", "halting"), ("Attempting graceful shutdown", "shutting down"),
)


class VMLabError(RuntimeError):
    """The VM lab cannot be brought up as asked."""


def vagrant_stage(line: str) -> str | None:
    for key, stage in VAGRANT_STAGES:
        if key in line:
            machine = line.split(":", 1)[0].replace("==>", "").strip()
            return f"{machine}: {stage}" if machine else stage
    return None


def own_boxes(spec: LabSpec) -> list[boxes.Box]:
    """The boxes swarmlab builds for this spec: nodes whose `box:` is `swarmlab/<distro>`."""
    wanted = []
    for node in spec.nodes:
        if node.box and node.box.startswith(f"{boxes.BOX_PREFIX}/"):
            distro = node.box.split("/", 1)[1]
            if distro != node.distro:
                raise VMLabError(f"nodes[{spec.nodes.index(node)}].box {node.box!r} is not the node's "
                                 f"distro {node.distro!r}. Fix: box: {boxes.BOX_PREFIX}/{node.distro}")
            if boxes.Box(distro) not in wanted:
                wanted.append(boxes.Box(distro))
    return wanted


def vm_env(spec: LabSpec, spec_path: Path, driver: str | None = None) -> dict[str, str]:
    """What the Vagrantfile and the inventory read for this VM lab."""
    state = lab_state_dir(spec.name)
    env = {
        "SWARMLAB_SPEC": str(spec_path.resolve()),
        "VAGRANT_DOTFILE_PATH": str(state / "vagrant"),
        "VAGRANT_DEFAULT_PROVIDER": PROVIDER,
        "SWARMLAB_CONSOLE_DIR": str(state / "console"),
        "SWARMLAB_STATE": str(state_root()),
    }
    if driver:
        env[host.DRIVER_ENV] = driver
    return env


def vagrant(spec: LabSpec, env: dict[str, str], *args: str, log: Callable[[str], None] = print,
            label: str = "vagrant") -> str:
    """Run vagrant in the Vagrantfile's directory with the lab's environment; its output."""
    cmd = ["vagrant", *args]
    output: list[str] = []
    result = run_streamed(cmd, f"  {label}", log, sink=output.append, stage_of=vagrant_stage,
                          throttle=Throttle(f"  {label}", heartbeat=30.0),
                          env=dict(os.environ, **env), cwd=vagrant_root())
    text = "\n".join(output)
    (lab_state_dir(spec.name) / f"vagrant-{args[0]}.log").write_text(text)
    if result.returncode != 0:
        tail = "\n".join(line for line in output[-20:] if "Progress:" not in line)
        raise VMLabError(f"vagrant {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return text


def prepare(spec: LabSpec, spec_path: Path, log: Callable[[str], None] = print) -> dict[str, str]:
    """libvirt running, the spec's swarmlab boxes built, the accelerator chosen: the env to use."""
    host.ensure_libvirt(log)
    driver: str | None = None
    for box in own_boxes(spec):
        start = time.monotonic()
        built = boxes.ensure_box(box, log=lambda m: log(f"  {m}"))
        log(f"box {box.name} ({'built' if built else 'cached'}, {time.monotonic() - start:.0f} s)")
        where = boxes.installed_dir(box)
        if where is None:
            raise VMLabError(f"box {box.name} is not in Vagrant's box store after building it")
        driver = host.choose_driver(where / "vmlinuz", where / "initrd.img",
                                    lab_state_dir(spec.name).parent / "kvm-probe.json", log)
    env = vm_env(spec, spec_path, driver)
    # a container-lab connection file of the same lab would point the inventory elsewhere
    (lab_state_dir(spec.name) / CONNECTION_FILE).unlink(missing_ok=True)
    (lab_state_dir(spec.name) / "console").mkdir(exist_ok=True)
    return env


def up(spec: LabSpec, spec_path: Path, log: Callable[[str], None] = print) -> dict[str, str]:
    """Every node of the spec running as a VM; the environment the deploy must see."""
    env = prepare(spec, spec_path, log)
    start = time.monotonic()
    for attempt in range(1, UP_TRIES + 1):
        try:
            vagrant(spec, env, "up", f"--provider={PROVIDER}", log=log, label="vagrant up")
            break
        except VMLabError as err:  # a guest that did not boot: Vagrant removed it; once more
            if attempt == UP_TRIES:
                raise
            log(f"vagrant up failed (a guest did not come up; its console: {env['SWARMLAB_CONSOLE_DIR']}): "
                f"{str(err).splitlines()[-1]}; trying again ({attempt + 1}/{UP_TRIES})")
    log(f"VMs up: {', '.join(n.name for n in spec.nodes)} ({time.monotonic() - start:.0f} s)")
    return env


def down(spec: LabSpec, spec_path: Path, log: Callable[[str], None] = print) -> None:
    """Destroy the lab's VMs (and the libvirt network Vagrant made for them).

    What Vagrant no longer knows of (its state removed, or a run of the same lab from another
    checkout interrupted) is removed from libvirt by name: the domains `<lab>_<node>` with their
    disks, and the network `swarmlab-<lab>`.
    """
    env = vm_env(spec, spec_path)
    if Path(env["VAGRANT_DOTFILE_PATH"]).is_dir():
        vagrant(spec, env, "destroy", "-f", log=log, label="vagrant destroy")
    if not host.libvirt_answers():
        return
    for name in libvirt_leftovers(spec, host.virsh("list", "--all", "--name").stdout.split()):
        host.virsh("destroy", name)
        host.virsh("undefine", name, "--remove-all-storage")
        log(f"removed the libvirt domain {name} (and its disk), unknown to Vagrant")
    net = f"swarmlab-{spec.name}"
    if host.virsh("net-info", net).returncode == 0:
        host.virsh("net-destroy", net)
        host.virsh("net-undefine", net)
        log(f"removed the libvirt network {net}")


def libvirt_leftovers(spec: LabSpec, domains: list[str]) -> list[str]:
    """The lab's domains among libvirt's (the Vagrantfile names them `<lab>_<node>`)."""
    mine = {f"{spec.name}_{node.name}" for node in spec.nodes}
    return [d for d in domains if d in mine]

