"""``llmctl flags get`` and ``llmctl flags set KEY=VALUE...``.

Keys are ``Flags`` field paths (``shadow_sample_rate``, ``rollback.error_rate``); each value is
parsed by its field's type (bool, number, provider name) and the FieldMask is built from the
keys, so only the named fields change. The control service validates the whole resulting config.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from clients.cli._common import Subparsers
from clients.cli._control_common import (
    EXIT_CODES_HELP,
    UsageError,
    add_change_options,
    add_connection_options,
    change_kwargs,
    error_line,
    run_control,
)
from clients.cli._errors import EXIT_USAGE
from clients.cli._output import emit, format_pairs, format_table
from clients.cli._values import (
    descriptor_of,
    enum_prefix,
    enum_type,
    field_by_name,
    fields_of,
    flat_items,
    message_dict,
    message_type,
    show,
)
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INT32 = (-(2**31), 2**31 - 1)
# Words that mean an enum's 0 value, where the proto gives it a meaning.
_ZERO_WORDS: dict[str, set[str]] = {
    "Provider": {"none", "unspecified"},
    "ComponentProvider": {"unspecified"},
}


def register(subparsers: Subparsers) -> None:
    """Adds ``flags get`` and ``flags set``."""
    flags = subparsers.add_parser(
        "flags",
        help="show or change the provider flags",
        description="Show (get) or change (set) the control service's Flags.",
        epilog=EXIT_CODES_HELP,
    )
    verbs = flags.add_subparsers(dest="flags_command", metavar="VERB", required=True)

    get = verbs.add_parser(
        "get",
        help="print every flag",
        description="Prints every flag with its current value.",
        epilog=EXIT_CODES_HELP,
    )
    add_connection_options(get)
    get.set_defaults(handler=run_get)

    set_ = verbs.add_parser(
        "set",
        help="change flags: KEY=VALUE ...",
        description="Changes the named flags, e.g. shadow_enabled=true shadow_sample_rate=0.1 "
        "rollback.error_rate=0.05 synthesis_provider=vllm fallback_provider=none. A list "
        "takes a JSON array in the proto JSON mapping and replaces the whole list, e.g. "
        'prompt_policies=\'[{"model": "qwen3:8b", "systemPrefix": "..."}]\' ([] clears it). '
        "Keys: " + ", ".join(flag_keys()),
        epilog=EXIT_CODES_HELP,
    )
    set_.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="flag to change")
    set_.add_argument(
        "--force",
        action="store_true",
        help="move embedding_provider off Ollama without a passed embedding parity measurement; "
        "--reason must name the re-index (audited)",
    )
    add_connection_options(set_)
    add_change_options(set_)
    set_.set_defaults(handler=run_set)


def flag_keys(descriptor: Descriptor | None = None, prefix: str = "") -> list[str]:
    """Every settable (scalar or enum) field path of ``Flags``."""
    descriptor = descriptor or control_pb2.Flags.DESCRIPTOR
    keys: list[str] = []
    for field in fields_of(descriptor):
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            keys.extend(flag_keys(message_type(field), f"{prefix}{field.name}."))
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def parse_assignments(assignments: Sequence[str]) -> tuple[control_pb2.Flags, list[str]]:
    """The ``Flags`` holding the new values and the mask paths; UsageError names a bad key or
    value."""
    flags = control_pb2.Flags()
    paths: list[str] = []
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("flags.")
        if not sep or not key:
            raise UsageError(f"flags set: expected KEY=VALUE, got {item!r}")
        if key in paths:
            raise UsageError(f"flags set: {key} is given twice")
        target, field = _resolve(flags, key)
        if field.is_repeated:
            _assign_list(target, field, key, text.strip())
        else:
            setattr(target, field.name, _parse_value(key, field, text.strip()))
        paths.append(key)
    return flags, paths


def _resolve(flags: control_pb2.Flags, key: str) -> tuple[Message, FieldDescriptor]:
    target: Message = flags
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = field_by_name(descriptor_of(target), part)
        if field is None:
            raise UsageError(f"flags set: unknown flag {key!r} (known: {', '.join(flag_keys())})")
        last = i == len(parts) - 1
        if field.is_repeated and not last:
            raise UsageError(f"flags set: {key}: {part} is a list; set it whole ({part}=[...])")
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            if last:
                fields = ", ".join(f"{key}.{f.name}" for f in fields_of(message_type(field)))
                raise UsageError(f"flags set: {key} is a group; set its fields ({fields})")
            target = getattr(target, part)
        elif not last:
            raise UsageError(f"flags set: unknown flag {key!r} ({part} has no fields)")
        else:
            return target, field
    raise AssertionError("unreachable")  # pragma: no cover


def _assign_list(target: Message, field: FieldDescriptor, key: str, text: str) -> None:
    """A list field takes a JSON array (``[]`` clears it), in the proto's JSON mapping."""
    try:
        items = json.loads(text)
    except ValueError:
        raise UsageError(f"flags set: {key}: {text!r} is not a JSON array") from None
    if not isinstance(items, list):
        raise UsageError(f"flags set: {key}: expected a JSON array, e.g. {key}=[]")
    try:
        json_format.ParseDict({field.json_name: items}, target)
    except json_format.ParseError as exc:
        raise UsageError(f"flags set: {key}: {exc}") from None


def _parse_value(key: str, field: FieldDescriptor, text: str) -> bool | float | int | str:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text
    if kind == FieldDescriptor.TYPE_BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"flags set: {key}: {text!r} is not a boolean (true or false)")
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            number = float(text)
        except ValueError:
            raise UsageError(f"flags set: {key}: {text!r} is not a number") from None
        if not math.isfinite(number):
            raise UsageError(f"flags set: {key}: {text!r} is not a finite number")
        return number
    if kind == FieldDescriptor.TYPE_INT32:
        try:
            integer = int(text, 10)
        except ValueError:
            raise UsageError(f"flags set: {key}: {text!r} is not an integer") from None
        if not _INT32[0] <= integer <= _INT32[1]:
            raise UsageError(f"flags set: {key}: {text} does not fit a 32-bit integer")
        return integer
    if kind == FieldDescriptor.TYPE_ENUM:
        return _parse_enum(key, field, text)
    raise UsageError(f"flags set: {key}: cannot set a field of this type")  # pragma: no cover


def _parse_enum(key: str, field: FieldDescriptor, text: str) -> int:
    enum = enum_type(field)
    prefix = enum_prefix(enum)
    word = text.lower().removeprefix(prefix.lower())
    if word in _ZERO_WORDS.get(enum.name, set()):
        return 0
    choices = sorted(_ZERO_WORDS.get(enum.name, set()))
    for value in enum.values:
        short = value.name.removeprefix(prefix).lower()
        if value.number == 0:
            continue
        choices.append(short)
        if word == short:
            return value.number
    raise UsageError(
        f"flags set: {key}: unknown value {text!r} (expected one of: {', '.join(choices)})"
    )


def _value_at(flags: control_pb2.Flags, key: str) -> str:
    target: Message = flags
    *groups, name = key.split(".")
    for group in groups:
        target = getattr(target, group)
    return show(message_dict(target)[name])


def run_get(args: argparse.Namespace) -> int:
    """Runs ``flags get``."""

    async def body(client: ControlClient) -> int:
        snap = (await client.get_state()).snapshot
        values = message_dict(snap.flags)
        rows = [(key, show(value)) for key, value in flat_items(values)]
        emit(
            args,
            {"version": snap.version, "flags": values},
            [f"config version {snap.version}", *format_table(["FLAG", "VALUE"], rows)],
        )
        return 0

    return run_control(args, body)


def run_set(args: argparse.Namespace) -> int:
    """Runs ``flags set``."""
    try:
        flags, paths = parse_assignments(args.assignments)
    except UsageError as error:
        error_line(str(error))
        return EXIT_USAGE

    async def body(client: ControlClient) -> int:
        snap = await client.update_flags(flags, paths, force=args.force, **change_kwargs(args))
        changed = {key: _value_at(snap.flags, key) for key in paths}
        emit(
            args,
            {
                "action": "update_flags",
                "version": snap.version,
                "changed": paths,
                "flags": message_dict(snap.flags),
            },
            [
                f"update_flags: ok, config version {snap.version}",
                *format_pairs(list(changed.items())),
            ],
        )
        return 0

    return run_control(args, body)
