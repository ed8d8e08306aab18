"""The lab spec's JSON Schema and docs/spec.md's field reference come from the pydantic model:
the committed copies are current, every field is described with an example, and the shipped
specs point their editors at the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from swarmlab.cli.commands import main
from swarmlab.model import schema
from swarmlab.model.spec import LabSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / schema.SCHEMA_FILE
SPECS = [ROOT / "lab.yaml", *sorted((ROOT / "labs").glob("*.yaml")),
         *sorted((ROOT / "tests" / "live" / "labs").glob("*.yaml"))]
COMMENT = "# yaml-language-server: $schema="


def _objects(node: object):
    """Every JSON Schema object with `properties`, nested anywhere."""
    if isinstance(node, dict):
        if "properties" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == schema.schema_text(), \
        "docs/lab-spec.schema.json is stale: run python -m swarmlab.model.schema"


def test_spec_reference_page_is_current() -> None:
    page = (ROOT / "docs" / "spec.md").read_text()
    assert schema.rewrite_page(page) == page, "docs/spec.md is stale: run python -m swarmlab.model.schema"


def test_reference_lists_every_field_of_every_section() -> None:
    ref = schema.markdown_reference()
    for path in ("`network`", "`swarm.overlays[]`", "`nodes[]`", "`security`"):
        assert f"### {path}" in ref
    for model in (LabSpec, *(m for _, m in schema._sections(LabSpec, ""))):
        for name in model.model_fields:
            assert f"| `{name}` |" in ref, name


def test_every_field_has_a_description_and_an_example() -> None:
    objects = list(_objects(schema.json_schema()))
    assert len(objects) == 9  # LabSpec and its eight nested models
    for obj in objects:
        assert obj.get("additionalProperties") is False  # an editor flags an unknown field
        assert obj.get("description"), obj.get("title")
        for name, prop in obj["properties"].items():
            assert prop.get("description"), f"{obj['title']}.{name} has no description"
            assert prop.get("examples"), f"{obj['title']}.{name} has no example"


def test_examples_are_valid_values() -> None:
    """Each model's examples, put into a valid spec, pass the spec's own validation."""
    base = load_spec(ROOT / "labs" / "local.yaml").model_dump()
    for name, field in LabSpec.model_fields.items():
        for example in field.examples or []:
            if isinstance(example, dict) and name not in ("nodes",):
                spec = {**base, name: {**base[name], **example}}
                if name == "security" and example.get("profile") == "hardened":
                    continue  # needs autolock and encrypted overlays: a cross-field rule
                LabSpec.model_validate(spec)


def test_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == schema.json_schema()


def test_distro_is_an_enum_of_the_known_distros() -> None:
    node = schema.json_schema()["$defs"]["NodeSpec"]["properties"]["distro"]
    assert "debian-13" in node["enum"] and "manjaro" in node["enum"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_point_editors_at_the_schema(spec: Path) -> None:
    first = spec.read_text().splitlines()[0]
    assert first.startswith(COMMENT), f"{spec.name}: first line is not the schema comment"
    target = (spec.parent / first[len(COMMENT):]).resolve()
    assert target == SCHEMA_FILE.resolve()
    load_spec(spec)  # and the comment does not change what the spec says
