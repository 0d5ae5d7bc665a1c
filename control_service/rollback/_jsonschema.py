"""JSON Schema (draft 2020-12) for the golden queries' ``json_schema`` check, on the
``jsonschema`` library.

The library replaced a hand-written subset that took ``True`` for ``enum: [1]``, ``1`` for
``const: true`` and accepted ``{"minItems": "x"}`` as a schema only to raise ``TypeError`` when an
answer was judged. Two things stay ours, both so that a golden file never silently checks less
than it says:

- the schema is checked against the draft's metaschema when the file is *loaded*, so a bad
  schema is a :class:`~control_service.rollback.golden.GoldenFileError` naming the field, not an
  exception in the middle of a gate evaluation;
- a keyword the draft does not know (a typo such as ``requried``) is refused; the library would
  ignore it, as the specification allows.

Messages are the library's, prefixed with where in the instance they apply (``$.tags[0]``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

_VALIDATOR = Draft202012Validator
# The draft's keywords that annotate or structure a schema without asserting anything.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$vocabulary",
        "$comment",
        "$defs",
        "title",
        "description",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "examples",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
_KEYWORDS = frozenset(_VALIDATOR.VALIDATORS) | _ANNOTATIONS


def _where(path: Iterable[str | int], root: str) -> str:
    out = root
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _subschemas(schema: Any) -> Iterator[Any]:
    """``schema`` and every schema nested in it, as the draft defines nesting."""
    todo = deque([schema])
    while todo:
        here = todo.popleft()
        yield here
        todo.extend(DRAFT202012.subresources_of(here))


def check_schema(schema: Any) -> list[tuple[str, str]]:
    """Problems with ``schema`` itself as ``(where, what)``: not valid against the draft's
    metaschema, or a keyword the draft does not know. ``where`` is the dotted place in the schema
    (``""`` for the top, ``properties.tags.minItems``); empty when the schema is usable."""
    meta = _VALIDATOR(_VALIDATOR.META_SCHEMA)
    problems = sorted((_where(e.absolute_path, ""), e.message) for e in meta.iter_errors(schema))
    if problems:
        return [(where.removeprefix("."), what) for where, what in problems]
    keys = {str(key) for sub in _subschemas(schema) if isinstance(sub, dict) for key in sub}
    return [(key, "not a JSON Schema 2020-12 keyword") for key in sorted(keys - _KEYWORDS)]


def validate(instance: Any, schema: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema`` (which :func:`check_schema` accepted), ordered by
    where in the instance."""
    errors = _VALIDATOR(schema).iter_errors(instance)
    found = [(_where(e.absolute_path, "$"), e.message) for e in errors]
    return [f"{where}: {message}" for where, message in sorted(found)]
