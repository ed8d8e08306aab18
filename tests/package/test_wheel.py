"""The wheel: build it, install it (not editable) into a fresh venv, use it from another directory,
and run the unit suite against it.

The unit suite runs in a copy of this repo without its `swarmlab/` directory, so the only
swarmlab it can import is the installed one (tests/unit/test_packaging.py checks
`swarmlab.__file__` against SWARMLAB_TEST_INSTALLED). pip reuses its cache: a few minutes on a
loaded machine, most of it the unit suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MUST_SHIP = [
    "swarmlab/templates/daemon.json.j2", "swarmlab/templates/apt-lock-timeout.conf",
    "swarmlab/deploys/swarm.py", "swarmlab/inventories/lab.py", "swarmlab/labs/local.yaml",
    "swarmlab/verify/conftest.py", "swarmlab/verify/test_swarm.py", "swarmlab/data/platform.json",
    "swarmlab/report/templates/report.html.j2", "swarmlab/containerlab/image.py",
]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def repo_files() -> list[str]:
    """The repo's files as a clone has them (tracked, plus new files not ignored)."""
    out = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


def copy_tree(dest: Path, files: list[str]) -> Path:
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel built from a clean copy of the repo, installed with its dev extras in a fresh venv."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repo's files")
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_tree(tmp / "src", repo_files())
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    [wheel] = (tmp / "dist").glob("swarmlab-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[dev]"], cwd=tmp)
    site = run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=tmp).strip()
    return {"tmp": tmp, "wheel": wheel, "venv": venv, "site": Path(site)}


def test_the_wheel_ships_templates_entry_points_example_and_suite(installed: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert [n for n in MUST_SHIP if n not in names] == []
    tops = {n.split("/")[0] for n in names}
    # nothing beside the package: no top-level templates/, deploys/, tests/ ...
    assert {t for t in tops if not t.endswith(".dist-info")} == {"swarmlab"}
    for name in MUST_SHIP:  # each is the repo's file: templates/x ships as swarmlab/templates/x
        mapped = name.split("/")[1] in ("templates", "deploys", "inventories", "labs")
        source = ROOT / (name.removeprefix("swarmlab/") if mapped else name)
        assert (installed["site"] / name).read_bytes() == source.read_bytes()


def test_installed_cli_validates_a_spec_from_another_directory(installed: dict[str, Path]) -> None:
    elsewhere = installed["tmp"] / "elsewhere"
    elsewhere.mkdir()
    spec = elsewhere / "lab.yaml"
    shutil.copy(installed["site"] / "swarmlab" / "labs" / "local.yaml", spec)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLAB_")}
    swarmlab = str(installed["venv"] / "bin" / "swarmlab")
    out = run([swarmlab, "validate", str(spec)], cwd=elsewhere, env=env)
    assert out.startswith(f"{spec}: ok — lab local")
    empty = installed["tmp"] / "empty"  # no lab.yaml here: an installed swarmlab has no default lab
    empty.mkdir()
    proc = subprocess.run([swarmlab, "up"], cwd=empty, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cp {installed['site'] / 'swarmlab' / 'labs' / 'local.yaml'} lab.yaml" in proc.stderr
    # a user's own pyinfra project: the deploy functions find the shipped templates
    code = ("from swarmlab.provision.context import template; from pathlib import Path; "
            "p = Path(template('daemon.json.j2')); print(p, p.is_file())")
    out = run([str(installed["venv"] / "bin" / "python"), "-c", code], cwd=elsewhere, env=env)
    assert out.strip() == f"{installed['site'] / 'swarmlab' / 'templates' / 'daemon.json.j2'} True"
    assert not (elsewhere / ".swarmlab").exists()  # validate writes no state


def test_the_unit_suite_passes_against_the_installed_wheel(installed: dict[str, Path]) -> None:
    # the repo without its package: only swarmlab/data/ stays, which the repo's Vagrantfile reads
    # (tests/unit/test_vagrantfile.py); a directory without __init__.py never shadows a package
    files = [n for n in repo_files() if not n.startswith("swarmlab/") or n.startswith("swarmlab/data/")]
    tree = copy_tree(installed["tmp"] / "repo-without-package", files)
    assert not list((tree / "swarmlab").rglob("*.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLAB_") and k != "PYTHONPATH"}
    env["SWARMLAB_TEST_INSTALLED"] = str(installed["site"])
    python = str(installed["venv"] / "bin" / "python")
    out = run([python, "-m", "pytest", "tests/unit", "-q", "-n", "2", "-p", "no:cacheprovider"],
              cwd=tree, env=env, timeout=1800)
    assert " passed" in out.splitlines()[-1] and "failed" not in out.splitlines()[-1]
