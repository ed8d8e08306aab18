"""The lab spec's JSON Schema and its field reference, both from the pydantic model.

`swarmlab schema` prints the schema. In a checkout, `python -m swarmlab.model.schema` writes the
committed copies: docs/lab-spec.schema.json (what the shipped specs' `yaml-language-server`
comment points editors at) and the generated block of docs/spec.md; `--check` exits 1 when
either is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

from swarmlab.model.shipped import checkout
from swarmlab.model.spec import LabSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "lab-spec.schema.json"
BEGIN = ("<!-- spec reference: written by `python -m swarmlab.model.schema` from swarmlab/model/spec.py;"
         " do not edit by hand -->")
END = "<!-- end of spec reference -->"


def json_schema() -> dict[str, Any]:
    """The lab spec's JSON Schema (draft 2020-12): descriptions, defaults, examples, no extras."""
    return {"$schema": SCHEMA_DIALECT, **LabSpec.model_json_schema()}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _type(annotation: Any) -> str:
    """A short reader's name of a field type: `string`, `list of string`, `auto, official`..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in kept) + (" or null" if len(kept) < len(args) else "")
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean"}.get(annotation, "any JSON value")


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style (JSON is valid YAML)."""
    if isinstance(value, BaseModel):
        return "(below)"
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default
    return "(below)" if isinstance(value, BaseModel) else _flow(value)


def _sections(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    """(path, model) for this model and every model nested in it, depth first."""
    out = [(path, model)]
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = typing.get_args(ann)[0] if typing.get_origin(ann) is list else ann
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            sub = f"{path}.{name}" if path else name
            out += _sections(inner, sub + ("[]" if inner is not ann else ""))
    return out


def markdown_reference() -> str:
    """docs/spec.md's generated block: one table per section of the spec."""
    parts = []
    for path, model in _sections(LabSpec, ""):
        title = f"`{path}`" if path else "Top level"
        rows = ["| field | type | default | description | example |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            example = _flow(field.examples[0]) if field.examples else ""
            rows.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | "
                        f"{field.description} | {example} |")
        parts.append(f"### {title}\n\n{(model.__doc__ or '').strip()}\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def rewrite_page(page: str) -> str:
    """docs/spec.md with the block between the markers replaced by the current reference."""
    begin, end = page.find(BEGIN), page.find(END)
    if begin < 0 or end < begin:
        raise ValueError("docs/spec.md has no spec-reference markers")
    return f"{page[:begin + len(BEGIN)]}\n{markdown_reference()}\n{page[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarmlab.model.schema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed copy is stale")
    args = parser.parse_args(argv)
    root = checkout()
    if root is None:
        parser.error("the committed copies live in a checkout (`swarmlab schema` prints the schema)")
    docs = root / "docs"
    files = {docs / SCHEMA_FILE: schema_text()}
    spec_md = docs / "spec.md"
    files[spec_md] = rewrite_page(spec_md.read_text())
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if args.check:
        print("stale: " + ", ".join(map(str, stale)) if stale else "schema and spec reference are current")
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
