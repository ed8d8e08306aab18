"""What the wheel ships and where swarmlab finds it (swarmlab/model/shipped.py), and where lab state goes.

The unit suite also runs against an installed wheel (tests/package/test_wheel.py sets
SWARMLAB_TEST_INSTALLED to that venv's site-packages): the first test then proves the installed
copy was imported, not this checkout's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import swarmlab
from swarmlab.cli import commands as cli
from swarmlab.model import shipped, specfile, state

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = os.environ.get("SWARMLAB_TEST_INSTALLED")  # site-packages of the wheel under test


def test_swarmlab_under_test_is_the_expected_copy() -> None:
    here = Path(swarmlab.__file__).resolve().parent
    if INSTALLED:
        assert here == Path(INSTALLED).resolve() / "swarmlab"
        assert shipped.checkout() is None
    else:
        assert here == ROOT / "swarmlab"
        assert shipped.checkout() == ROOT


@pytest.mark.parametrize("name", shipped.SHIPPED)
def test_shipped_directories_are_found_with_their_files(name: str) -> None:
    found = shipped.shipped(name)
    repo = sorted(p.name for p in (ROOT / name).iterdir() if p.is_file())
    assert sorted(p.name for p in found.iterdir() if p.is_file() and p.name != "__init__.py") == repo
    if INSTALLED:
        assert found == Path(INSTALLED).resolve() / "swarmlab" / name
        for path in (p for p in (ROOT / name).iterdir() if p.is_file()):  # byte for byte
            assert (found / path.name).read_bytes() == path.read_bytes()
    else:
        assert found == ROOT / name


def test_an_installed_layout_finds_files_inside_the_package(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "site-packages" / "swarmlab"
    (package / "templates").mkdir(parents=True)
    monkeypatch.setattr(shipped, "PACKAGE", package)
    assert shipped.checkout() is None
    assert shipped.shipped("templates") == package / "templates"
    assert shipped.default_spec("labs/local.yaml") is None
    with pytest.raises(ValueError, match="not shipped"):
        shipped.shipped("scripts")


def test_the_repo_holds_one_copy_of_each_shipped_directory() -> None:
    for name in shipped.SHIPPED:
        assert (ROOT / name).is_dir()
        assert not (ROOT / "swarmlab" / name).exists(), f"swarmlab/{name} would be a second copy of {name}/"


def test_pyproject_ships_every_package_and_maps_every_shipped_directory() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = Path(swarmlab.__file__).resolve().parent  # the source, or the installed copy
    code = {".".join(p.parent.relative_to(package.parent).parts)
            for p in package.rglob("__init__.py") if "__pycache__" not in p.parts}
    mapped = {f"swarmlab.{name}": name for name in shipped.SHIPPED}
    assert set(config["packages"]) == code | set(mapped)
    assert config["package-dir"] == mapped
    for package in mapped:
        assert config["package-data"][package], f"{package} ships no files"


def test_package_code_does_not_look_for_files_beside_the_package() -> None:
    """PROJECT_ROOT is site-packages when installed: only swarmlab.model.state defines it (tests/live use it)."""
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "swarmlab").rglob("*.py")
             if re.search(r"\bPROJECT_ROOT\b", p.read_text()) and p.name != "state.py"]
    assert users == []


def test_state_defaults_to_dot_swarmlab_in_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert state.state_root() == tmp_path / ".swarmlab"
    assert state.lab_state_dir("x") == tmp_path / ".swarmlab" / "x"
    assert (tmp_path / ".swarmlab" / "x").stat().st_mode & 0o777 == 0o700


def test_state_follows_swarmlab_state_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWARMLAB_STATE", "labs-state")
    assert state.state_root() == tmp_path / "labs-state"


def test_a_checkouts_old_state_dir_is_kept_with_one_notice(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    monkeypatch.setattr(state, "_noticed", set())
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".state").mkdir()
    assert state.state_root() == tmp_path / ".state"
    assert state.state_root() == tmp_path / ".state"
    err = capsys.readouterr().err
    assert err.count("note: lab state in") == 1 and "mv .state .swarmlab" in err
    (tmp_path / ".swarmlab").mkdir()
    assert state.state_root() == tmp_path / ".swarmlab"


def test_pyinfra_and_pytest_get_the_state_dir_and_spec(tmp_path: Path, monkeypatch) -> None:
    from swarmlab.cli import pipeline

    monkeypatch.delenv("SWARMLAB_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    env = pipeline._env(Path("/somewhere/lab.yaml"))
    assert env["SWARMLAB_STATE"] == str(tmp_path / ".swarmlab")
    assert env["SWARMLAB_SPEC"] == "/somewhere/lab.yaml"


def test_installed_up_without_a_spec_names_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SWARMLAB_SPEC", raising=False)
    monkeypatch.setattr(specfile, "default_spec", lambda _relative: None)
    monkeypatch.chdir(tmp_path)  # no ./lab.yaml
    result = CliRunner().invoke(cli.main, ["up"])
    assert result.exit_code == 2
    assert "no lab spec" in result.output and "--spec FILE" in result.output
    assert f"cp {shipped.example_spec()} lab.yaml" in result.output
    assert shipped.example_spec().is_file()


def test_the_entry_points_pyinfra_runs_are_shipped_and_call_functions() -> None:
    """pyinfra executes a deploy file once per host: each must call its deploy functions."""
    from swarmlab.cli import pipeline

    assert pipeline.INVENTORY == shipped.shipped("inventories") / "lab.py"
    assert pipeline.SWARM_DEPLOY == shipped.shipped("deploys") / "swarm.py"
    assert (pipeline.VERIFY_SUITE / "conftest.py").is_file()
    for path in shipped.shipped("deploys").glob("*.py"):
        calls = re.findall(r"^(\w+)\(\)$", path.read_text(), re.MULTILINE)
        assert calls, f"{path.name} calls no deploy function at top level"
