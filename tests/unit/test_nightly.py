"""The nightly matrix cells: valid specs for every distro/source pair that exists, the lab size,
and the workflow's own steps for one cell (what the live nightly-cell test runs)."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from swarmlab.cli import commands as cli
from swarmlab.cli.nightly import WORKFLOW, nightly_spec, workflow_cells, workflow_run_steps
from swarmlab.containerlab.image import NodeImage
from swarmlab.model.distros import DISTROS, DOCKER_PACKAGES
from swarmlab.model.spec import parse_spec


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


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_node_count_is_a_parameter(nodes):
    spec = parse_spec(yaml.safe_dump(nightly_spec("debian-14", "distro", nodes)))
    assert len(spec.nodes) == nodes and len(spec.managers) == 1
    assert spec.nodes[0].role == "manager"
    assert all(n.role == "worker" for n in spec.nodes[1:])


@pytest.mark.parametrize("nodes", [0, 10])
def test_node_count_out_of_range(nodes):
    with pytest.raises(ValueError, match="1 to 9 nodes"):
        nightly_spec("debian-13", "distro", nodes)


def test_cli_nodes_option_and_env(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "run_nightly", lambda *a: calls.append(a) or 0)
    args = ["nightly", "--distro", "debian-13", "--source", "distro"]
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    assert CliRunner().invoke(cli.main, [*args, "--nodes", "2"]).exit_code == 0
    assert CliRunner().invoke(cli.main, args, env={"SWARMLAB_NIGHTLY_NODES": "1"}).exit_code == 0
    assert [c[3] for c in calls] == [3, 2, 1]
    assert CliRunner().invoke(cli.main, [*args, "--nodes", "0"]).exit_code == 2


def test_workflow_steps_for_a_cell_are_the_files_own():
    steps = workflow_run_steps("debian-14", "distro")
    text = WORKFLOW.read_text()
    assert steps[-1] == "swarmlab nightly --distro debian-14 --source distro --junit reports/junit.xml"
    assert "pip install -e ." in steps
    assert any("debootstrap" in s and s.startswith("sudo ") for s in steps)
    assert steps.index("pip install -e .") < len(steps) - 1
    assert all("${{" not in s for s in steps)
    [job] = [j for j in yaml.safe_load(text)["jobs"].values() if "matrix" in j.get("strategy", {})]
    assert sum("run" in step for step in job["steps"]) == len(steps)  # every run step of the cell


def test_workflow_steps_refuse_cells_and_expressions_it_cannot_run(tmp_path):
    with pytest.raises(ValueError, match="does not run manjaro/official"):
        workflow_run_steps("manjaro", "official")
    other = tmp_path / "nightly.yml"
    other.write_text(WORKFLOW.read_text().replace("--junit reports/junit.xml",
                                                  "--junit ${{ runner.temp }}/junit.xml"))
    with pytest.raises(ValueError, match="runner.temp"):
        workflow_run_steps("debian-13", "distro", other)


def test_workflow_cells_cover_the_package_table():
    _, cells = workflow_cells()
    assert ("debian-14", "distro") in cells and ("debian-13", "distro") in cells
    assert set(cells) <= set(DOCKER_PACKAGES)
