"""Where swarmlab keeps per-lab local state (SSH key, reports)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_root() -> Path:
    """`SWARMLAB_STATE` or `.state/` beside the project."""
    return Path(os.environ.get("SWARMLAB_STATE", PROJECT_ROOT / ".state"))


def lab_state_dir(lab: str) -> Path:
    path = state_root() / lab
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
