"""The lab's last `swarmlab trace` (`<state>/<lab>/trace.json`): written by the trace, drawn by
the report page on the topology."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swarmlab.model.state import lab_state_dir


def save(result: dict[str, Any]) -> Path:
    """The last trace of the lab, for the report page: .state/<lab>/trace.json."""
    path = lab_state_dir(result["lab"]) / "trace.json"
    path.write_text(json.dumps(result, indent=1))
    return path


def load_last(lab: str) -> dict[str, Any] | None:
    path = lab_state_dir(lab) / "trace.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
