"""Where swarmlab keeps per-lab local state (SSH key, CA, unlock key, logs, reports).

`$SWARMLAB_STATE`, else `.swarmlab` beside the lab spec the command reads (follow_spec; for a
spec inside a source checkout, at the checkout's root), else `./.swarmlab` in the current
directory: the user's directory, never site-packages. So a lab's state follows its spec, not the
directory a command runs in. An old `.state` directory (the default before) is still used while
there is no `.swarmlab` beside it, with a one-line notice: it holds the SSH keys, CA and unlock
keys of labs that may still be up, which a fresh directory would not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import swarmlab

STATE_DIR = ".swarmlab"
LEGACY_STATE_DIR = ".state"
# the repo root this module sits in: only meaningful in a checkout (tests/live use it); package
# code finds its files with swarmlab.model.shipped instead (a unit test checks)
PROJECT_ROOT = Path(swarmlab.__file__).resolve().parent.parent

_noticed: set[Path] = set()
_anchor: list[Path] = []  # the directory of the spec in use (follow_spec), at most one


def follow_spec(spec_path: Path | None) -> None:
    """Keep the state beside `spec_path` (the checkout's root for a spec inside a checkout);
    None: back to the current directory."""
    from swarmlab.model.shipped import checkout

    _anchor.clear()
    if spec_path is None:
        return
    from swarmlab.model.shipped import PACKAGE

    spec_dir = Path(spec_path).resolve().parent
    root = checkout()
    if root is not None and spec_dir.is_relative_to(root):
        _anchor.append(root)
    elif not spec_dir.is_relative_to(PACKAGE):  # a spec shipped in the installed package: the
        _anchor.append(spec_dir)                # current directory, never site-packages


def state_root() -> Path:
    """`$SWARMLAB_STATE`, else `.swarmlab` beside the spec in use or in the current directory
    (`.state` while only that exists), absolute."""
    given = os.environ.get("SWARMLAB_STATE")
    if given:
        return Path(given).absolute()
    here = _anchor[0] if _anchor else Path.cwd()
    legacy = here / LEGACY_STATE_DIR
    if legacy.is_dir() and not (here / STATE_DIR).is_dir():
        if legacy not in _noticed:
            _noticed.add(legacy)
            print(f"note: lab state in {legacy} (the old default); `mv {LEGACY_STATE_DIR} {STATE_DIR}` "
                  "or set SWARMLAB_STATE to move it", file=sys.stderr)
        return legacy
    return here / STATE_DIR


def lab_state_dir(lab: str) -> Path:
    path = state_root() / lab
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
