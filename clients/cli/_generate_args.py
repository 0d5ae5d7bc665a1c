"""``llmctl generate``'s feature flags: parsing files and ``key=value`` options into the client
library's types (a bad file or value is a usage error, exit 2, naming the flag)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clients.llm import Image, ReasoningLevel, ResponseFormat, Tool


def add_feature_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--think",
        nargs="?",
        const="on",
        choices=[r.value for r in ReasoningLevel if r is not ReasoningLevel.UNSPECIFIED],
        help="reasoning: on (default when given), off, low, medium, high, max",
    )
    parser.add_argument("--think-budget", type=int, help="cap on thinking tokens (vLLM)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="answer with a JSON object")
    fmt.add_argument(
        "--json-schema",
        type=_schema_file,
        metavar="FILE",
        help="answer with JSON valid for the JSON Schema in FILE (its name: the file's stem)",
    )
    parser.add_argument(
        "--tool",
        action="append",
        default=[],
        type=_tool_file,
        metavar="FILE",
        help='a tool the model may call: JSON {"name", "description", "parameters"} (repeatable)',
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        type=_image_file,
        metavar="FILE",
        help="an image for a vision model (repeatable)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option,
        metavar="KEY=VALUE",
        help="engine option from the allowlist, e.g. num_ctx=16384 (repeatable)",
    )
    parser.add_argument(
        "--timeout", dest="call_timeout", type=float, metavar="SECONDS", help="call deadline"
    )


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{path} is not JSON: {exc}") from exc


def _schema_file(path: str) -> ResponseFormat:
    schema = _read_json(path)
    if not isinstance(schema, dict):
        raise argparse.ArgumentTypeError(f"{path}: a JSON Schema must be an object")
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in Path(path).stem)[:64]
    return ResponseFormat.schema(name or "schema", schema)


def _tool_file(path: str) -> Tool:
    spec = _read_json(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise argparse.ArgumentTypeError(f'{path}: a tool is an object with a "name"')
    params = spec.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(f'{path}: "parameters" must be a JSON Schema object')
    return Tool(spec["name"], str(spec.get("description", "")), params)


def _image_file(path: str) -> Image:
    try:
        return Image(Path(path).read_bytes())
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from exc


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()
