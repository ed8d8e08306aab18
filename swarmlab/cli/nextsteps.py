"""What to do after `swarmlab up`: the commands for this lab, printed after the summary line."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from swarmlab.model.spec import LabSpec
from swarmlab.model.specfile import default_path
from swarmlab.model.state import state_root

REPORT_FILE = "report.html"  # written by `swarmlab report`


def program(argv0: str | None = None) -> str:
    """How the user can call swarmlab again: `swarmlab` when that is on PATH, else the path
    they ran (e.g. `.venv/bin/swarmlab` from `make lab`)."""
    ran = Path(argv0 if argv0 is not None else sys.argv[0])
    if ran.name != "swarmlab":
        return "swarmlab"
    found = shutil.which("swarmlab")
    if found and Path(found).resolve() == ran.resolve():
        return "swarmlab"
    return shlex.quote(_shown(ran))


def _shown(path: Path) -> str:
    """A path relative to the current directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def spec_args(spec_path: Path) -> str:
    """` --spec PATH` unless the commands would find this spec by themselves (swarmlab.model.specfile)."""
    default = default_path()
    if default is not None and spec_path.resolve() == default:
        return ""
    return f" --spec {shlex.quote(_shown(spec_path))}"


def next_steps(spec: LabSpec, spec_path: Path, prog: str = "swarmlab") -> list[str]:
    """The lines printed after the summary: a shell on the first manager, status, the report
    (only once `swarmlab report` wrote it), down."""
    args = spec_args(spec_path)
    manager = spec.first_manager.name
    rows = [
        (f"{prog} ssh{args} {manager}", f"a shell on {manager} (manager); add a command to run one"),
        (f"{prog} status{args}", "the nodes and their state"),
    ]
    report = state_root() / spec.name / REPORT_FILE
    if report.is_file():
        rows.append((shlex.quote(_shown(report)), "the lab report (HTML)"))
    rows.append((f"{prog} down{args}", f"remove lab {spec.name}: its containers, network, volumes"))
    width = max(len(cmd) for cmd, _ in rows)
    return ["next steps:"] + [f"  {cmd:<{width}}  # {why}" for cmd, why in rows]
