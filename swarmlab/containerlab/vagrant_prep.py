"""`swarmlab vagrant-prep`: what the Vagrantfile's docker provider needs and cannot make
itself (the node image, the lab network, the lab key), and the environment to export."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from swarmlab.containerlab import provider
from swarmlab.containerlab.image import NodeImage, ensure_image
from swarmlab.control.inventory import CONNECTION_FILE
from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir


class PrepError(RuntimeError):
    """The spec cannot run on the docker provider as it is."""


def node_image(spec: LabSpec) -> NodeImage:
    """The one node image of the lab (the Vagrantfile runs every node from one image)."""
    distros = sorted({n.distro for n in spec.nodes})
    if len(distros) != 1:
        raise PrepError(f"the docker provider runs every node from one image (SWARMLAB_NODE_IMAGE) "
                        f"but this spec has {', '.join(distros)}: give all nodes one distro")
    return NodeImage(distros[0])


def vagrant_env(spec: LabSpec, spec_path: Path) -> dict[str, str]:
    """The variables `vagrant up --provider=docker` and the inventory read for this lab."""
    state = lab_state_dir(spec.name)
    return {
        "SWARMLAB_SPEC": str(spec_path.resolve()),
        "SWARMLAB_NODE_IMAGE": node_image(spec).tag,
        "VAGRANT_DOTFILE_PATH": str(state / "vagrant"),  # Vagrant's state out of the project
        # the lab state follows the spec (swarmlab.model.state); the Vagrantfile reads the key there
        "SWARMLAB_STATE": str(state.parent),
    }


def prepare(spec: LabSpec, spec_path: Path, log: Callable[[str], None]) -> dict[str, str]:
    """Build the node image (unless cached), create the lab network and key; the env to export.

    A container-lab connection file of the same lab would point the inventory at the container
    lab's settings instead of Vagrant's: it is removed.
    """
    env = vagrant_env(spec, spec_path)
    provider.ensure_engine()
    image = node_image(spec)
    built = ensure_image(image, log=lambda m: log(f"  {m}"))
    log(f"node image {image.tag} ({'built' if built else 'cached'})")
    created = provider.ensure_network(spec)
    log(f"lab network {provider.LabNames(spec.name).network} on {spec.network.subnet} "
        f"({'created' if created else 'exists'})")
    key = provider.ssh_keypair(spec)
    log(f"lab key {key}")
    (lab_state_dir(spec.name) / CONNECTION_FILE).unlink(missing_ok=True)
    return env


def export_lines(env: dict[str, str]) -> list[str]:
    """`export NAME=value` lines for `eval "$(swarmlab vagrant-prep ...)"`, values quoted."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
