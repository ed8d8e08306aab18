"""The nightly matrix cells produce valid specs for every distro/source pair that exists."""

from __future__ import annotations

import pytest
import yaml

from swarmlab.containerlab.image import NodeImage
from swarmlab.distros import DISTROS, DOCKER_PACKAGES
from swarmlab.nightly import nightly_spec
from swarmlab.spec import parse_spec


@pytest.mark.parametrize("distro,source", sorted(DOCKER_PACKAGES))
def test_matrix_cell_spec_is_valid(distro, source):
    spec = parse_spec(yaml.safe_dump(nightly_spec(distro, source)))
    assert [n.distro for n in spec.nodes] == [distro] * 3
    assert spec.docker_source(spec.nodes[0]) == source
    assert len(spec.managers) == 1


@pytest.mark.parametrize("distro", sorted(DISTROS))
def test_node_image_recipe(distro):
    image = NodeImage(distro)
    assert image.tag.startswith(f"swarmlab/node:{distro}-")
    if image.debootstrapped:
        assert image.suite in ("bookworm", "trixie", "forky")
    else:
        assert image.dockerfile.startswith(f"FROM {image.base}\n")
        assert 'CMD ["/sbin/init"]' in image.dockerfile
