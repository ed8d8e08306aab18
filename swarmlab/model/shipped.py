"""Where the files swarmlab ships beside its code are found: templates, entry points, example labs.

The repo keeps them at its top level (`templates/`, `deploys/`, `inventories/`, `labs/`); the
wheel maps each into the package (`swarmlab/templates/`, ... via `package-dir` in
pyproject.toml), so an installed swarmlab finds them there and a checkout (an editable install)
finds the repo's own copy. There is only ever one copy of each file.
"""

from __future__ import annotations

from pathlib import Path

import swarmlab

PACKAGE = Path(swarmlab.__file__).resolve().parent  # the package, wherever this module sits in it
SHIPPED = ("templates", "deploys", "inventories", "labs")  # repo directories the wheel ships


def checkout() -> Path | None:
    """The source checkout this swarmlab runs from (editable install), or None (installed wheel)."""
    root = PACKAGE.parent
    if (root / "pyproject.toml").is_file() and all((root / name).is_dir() for name in SHIPPED):
        return root
    return None


def shipped(name: str) -> Path:
    """One of SHIPPED: inside the installed package, or the checkout's top-level directory."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped (one of: {', '.join(SHIPPED)})")
    inside = PACKAGE / name
    root = checkout()
    return root / name if root is not None and not inside.is_dir() else inside


def default_spec(relative: str) -> Path | None:
    """A checkout's default spec (e.g. `labs/local.yaml`); None when installed: the user names one."""
    root = checkout()
    return root / relative if root is not None else None


def example_spec() -> Path:
    """The example container lab the wheel ships (the repo's labs/local.yaml)."""
    return shipped("labs") / "local.yaml"
