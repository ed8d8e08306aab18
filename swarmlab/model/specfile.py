"""Which lab spec a command reads: one rule for every `swarmlab` command and the pyinfra inventory.

`--spec FILE`, else `$SWARMLAB_SPEC`, else `./lab.yaml` in the current directory, else (in a
source checkout) the checkout's container lab `labs/local.yaml`. The lab's local state follows
the spec it came from (swarmlab.model.state.follow_spec), never the current directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from swarmlab.model import state
from swarmlab.model.shipped import default_spec

SPEC_ENV = "SWARMLAB_SPEC"
CWD_SPEC = "lab.yaml"
CHECKOUT_SPEC = "labs/local.yaml"
RULE = (f"--spec FILE, else ${SPEC_ENV}, else ./{CWD_SPEC} in the current directory, else (in a "
        f"source checkout) {CHECKOUT_SPEC}")


@dataclass(frozen=True)
class Found:
    """A spec file and the step of the rule that chose it."""

    path: Path
    source: str

    def line(self) -> str:
        return f"spec: {self.path} ({self.source})"


def find_spec(given: str | os.PathLike[str] | None = None) -> Found | None:
    """The spec by the rule (`given`: the --spec value); None when no step names one. The
    lab state follows the spec found."""
    found = _find(given)
    if found is not None:
        state.follow_spec(found.path)
    return found


def _find(given: str | os.PathLike[str] | None) -> Found | None:
    if given:
        return Found(Path(given).resolve(), "--spec")
    if os.environ.get(SPEC_ENV):
        return Found(Path(os.environ[SPEC_ENV]).resolve(), f"${SPEC_ENV}")
    here = Path.cwd() / CWD_SPEC
    if here.is_file():
        return Found(here.resolve(), f"./{CWD_SPEC} in the current directory")
    default = default_spec(CHECKOUT_SPEC)
    if default is not None:
        return Found(default.resolve(), "the checkout's default")
    return None


def default_path() -> Path | None:
    """The spec a command finds without --spec (the steps after it), for `--spec` in hints."""
    found = _find(None)
    return found.path if found else None
