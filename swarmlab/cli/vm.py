"""`swarmlab box build` and `swarmlab vm up|down`: the VM lab on libvirt (KVM, or TCG without it).

Registered on the `swarmlab` command by swarmlab/cli/app.py."""

from __future__ import annotations

import os
from pathlib import Path

import click

from swarmlab.cli import pipeline
from swarmlab.cli.commands import LabError, deploy_and_verify
from swarmlab.cli.commands import _load as load_spec_option
from swarmlab.model.distros import DISTROS
from swarmlab.vm import box as boxes
from swarmlab.vm import host
from swarmlab.vm.lab import VMLabError, down, up

VM_ERRORS = (boxes.BoxError, host.HostError, VMLabError)

spec_option = click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), default=None,
    help="Lab spec (the one rule: --spec, $SWARMLAB_SPEC, ./lab.yaml, the checkout's default); "
    "the example VM lab is labs/vm.yaml (make vm-lab).",
)


def _load(spec_path: Path | None):
    return load_spec_option(spec_path)  # the one spec discovery rule


@click.group("box")
def box_group() -> None:
    """Build the VM lab's boxes (debootstrap, libvirt).

    A box is built here from Debian's packages: debootstrap -> a qcow2 disk with Debian's kernel,
    booted by extlinux, with Vagrant's user and key convention."""


@box_group.command("build")
@click.option("--distro", type=click.Choice(sorted(d for d, v in DISTROS.items()
                                                   if v.node_image_base.startswith("debootstrap:"))),
              default="debian-13", show_default=True, help="The Debian release to build.")
@click.option("--force", is_flag=True, help="Rebuild even when the installed box is current.")
def box_build(distro: str, force: bool) -> None:
    """Build swarmlab/DISTRO (skipped when current).

    Adds the box to Vagrant under the name swarmlab/DISTRO."""

    box = boxes.Box(distro)
    try:
        with pipeline.phase(f"box {box.name}") as info:
            built = boxes.ensure_box(box, log=lambda m: click.echo(f"  {m}"), force=force)
            info["detail"] = "built" if built else "current (same recipe hash)"
    except VM_ERRORS as err:
        raise LabError(str(err)) from None


@click.group("vm")
def vm_group() -> None:
    """The lab as libvirt VMs (KVM or TCG).

    up: the spec's boxes, the VMs (vagrant up --provider=libvirt), deploy, verify; down."""


@vm_group.command("up")
@spec_option
@click.option("--verify/--no-verify", default=True, help="Run the testinfra suite at the end.")
def vm_up(spec_path: Path | None, verify: bool) -> None:
    """Boxes, VMs, deploy, verify.

    Builds the spec's swarmlab boxes when needed, starts the VMs (vagrant up
    --provider=libvirt), then deploys and verifies them like any lab."""

    spec, path = _load(spec_path)
    try:
        with pipeline.phase("VMs") as info:
            env = up(spec, path, log=click.echo)
            info["detail"] = f"driver={env.get(host.DRIVER_ENV, 'kvm')}"
    except VM_ERRORS as err:
        raise LabError(str(err)) from None
    os.environ.update(env)  # the inventory asks Vagrant for the VMs' SSH settings
    deploy_and_verify(spec, path, verify)


@vm_group.command("down")
@spec_option
def vm_down(spec_path: Path | None) -> None:
    """Destroy the lab's VMs and their libvirt network."""

    spec, path = _load(spec_path)
    try:
        down(spec, path, log=click.echo)
    except VM_ERRORS as err:
        raise LabError(str(err)) from None
    click.echo(f"lab {spec.name}: VMs destroyed")
