"""`swarmlab report`: live facts of a lab (collect), its rules in plain words (explain), one HTML
page with the topology (render)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swarmlab.model.spec import LabSpec
from swarmlab.model.state import lab_state_dir


@dataclass
class ReportResult:
    json_path: Path
    html_path: Path
    collect_seconds: float
    differences: list[dict[str, str]]


def build_report(spec: LabSpec, spec_file: Path,
                 unreachable: dict[str, str] | None = None) -> ReportResult:
    """Collect over SSH, save report.json, render report.html (both in .swarmlab/<lab>/);
    `unreachable` (node -> SSH error) are not asked and carry their error in the page."""
    from swarmlab.report import collect, render
    from swarmlab.report.lasttrace import load_last

    data = collect.collect_lab(spec, spec_file, skip=unreachable)
    data["trace"] = load_last(spec.name)  # the last `swarmlab trace`, drawn on the topology
    json_path = collect.save(data)
    html_path = render.write(spec, data, lab_state_dir(spec.name) / "report.html")
    return ReportResult(json_path, html_path, data["seconds"], render.differences(spec, data))
