"""The small JSON Schema subset the golden queries need (the ``jsonschema`` package is not a
dependency of this project, so it is not used).

Supported keywords: ``type`` (a name or a list of names), ``enum``, ``const``, ``properties``,
``required``, ``additionalProperties`` (a boolean or a schema), ``items`` (one schema),
``minItems``, ``maxItems``, ``minLength``, ``maxLength``, ``pattern`` (``re.search``),
``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum`` (numbers, as in draft
2020-12), ``anyOf``; annotations (``$schema``, ``title``, ``description``) are ignored. Any other
keyword is refused by :func:`check_schema`, so a golden file never silently checks less than it
says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}
_ANNOTATIONS = {"$schema", "title", "description"}
_KEYWORDS = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
}


def check_schema(schema: Any, path: str = "") -> list[str]:
    """Problems with ``schema`` itself (unsupported keywords, wrong shapes); empty when usable."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, Mapping):
        return [f"{path or '$'}: a schema must be a mapping or a boolean"]
    out: list[str] = []
    for key, value in schema.items():
        here = f"{path}.{key}" if path else str(key)
        if key in _ANNOTATIONS:
            continue
        if key not in _KEYWORDS:
            out.append(f"{here}: unsupported keyword (supported: {', '.join(sorted(_KEYWORDS))})")
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            out += [f"{here}: unknown type {n!r}" for n in names if n not in _TYPES]
        elif key == "properties":
            if not isinstance(value, Mapping):
                out.append(f"{here}: must be a mapping")
            else:
                for name, sub in value.items():
                    out += check_schema(sub, f"{here}.{name}")
        elif key in ("items", "additionalProperties"):
            out += check_schema(value, here)
        elif key == "anyOf":
            if not isinstance(value, list) or not value:
                out.append(f"{here}: must be a non-empty list")
            else:
                for i, sub in enumerate(value):
                    out += check_schema(sub, f"{here}[{i}]")
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                out.append(f"{here}: not a regular expression ({exc})")
        elif key in ("required", "enum") and not isinstance(value, list):
            out.append(f"{here}: must be a list")
    return out


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("number", "integer"):
        return False  # JSON booleans are not numbers
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def validate(instance: Any, schema: Any, path: str = "$") -> list[str]:
    """Every way ``instance`` breaks ``schema`` (which :func:`check_schema` accepted)."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    out: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(instance, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(instance).__name__}"]
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "const" in schema and instance != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if "anyOf" in schema and all(validate(instance, s, path) for s in schema["anyOf"]):
        out.append(f"{path}: matches none of anyOf")
    if isinstance(instance, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in instance:
                out.append(f"{path}: missing required property {name!r}")
        for name, value in instance.items():
            if name in props:
                out += validate(value, props[name], f"{path}.{name}")
            elif "additionalProperties" in schema:
                out += validate(value, schema["additionalProperties"], f"{path}.{name}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            out.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                out += validate(item, schema["items"], f"{path}[{i}]")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            out.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            out.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            out.append(f"{path}: does not match {schema['pattern']!r}")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            out.append(f"{path}: below the minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            out.append(f"{path}: above the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            out.append(f"{path}: not above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and instance >= schema["exclusiveMaximum"]:
            out.append(f"{path}: not below {schema['exclusiveMaximum']}")
    return out
