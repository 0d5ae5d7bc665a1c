"""Hypothesis strategies for any protobuf message, from its descriptor: valid messages with
hostile values (extreme numbers, NaN, unknown enum values, control characters, long strings,
many repeated entries), and hostile bytes (random, truncated, invalid UTF-8 spliced in)."""

from __future__ import annotations

import contextlib
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

F = FieldDescriptor
_INT32 = st.one_of(
    st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
_INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1)
)
_UINT32 = st.integers(0, 2**32 - 1)
_UINT64 = st.integers(0, 2**64 - 1)
_FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1e308, -1e308, float("inf"), float("-inf"), float("nan")]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
_SHORT_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\n", "r1\nERROR forged", "\x00\x1b[31m"]),
)
_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=200),
    st.sampled_from(["", " ", "\n", "r1\nERROR forged", "\x00\x1b[31m", "qwen3:8b", "vllm"]),
    st.integers(1000, 300_000).map(lambda n: "x" * n),
)


def _scalar(field: FieldDescriptor, short: bool = False) -> st.SearchStrategy[Any]:
    t = field.type
    if short and t == F.TYPE_STRING:
        return _SHORT_TEXT
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return _INT32
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return _INT64
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return _UINT32
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return _UINT64
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return _FLOATS
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return _TEXT
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), _INT32)
    raise AssertionError(f"unhandled field type {t}")


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of ``descriptor``'s type, each field set or not."""
    msg = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(key_f))
                target = getattr(msg, field.name)
                if value_f.message_type is not None:
                    if depth < 3:
                        target[key].CopyFrom(draw(messages(value_f.message_type, depth + 1)))
                else:
                    target[key] = draw(_scalar(value_f))
            continue
        repeated = field.is_repeated
        if field.message_type is not None:
            if depth >= 3:
                continue
            if repeated:  # a few, or many copies of one small one (10 000 empty messages)
                items = [
                    draw(messages(field.message_type, depth + 1))
                    for _ in range(draw(st.integers(0, 3)))
                ]
                if depth == 0 and draw(st.integers(0, 9)) == 0:
                    items = [GetMessageClass(field.message_type)()] * draw(
                        st.sampled_from([1000, 10_001])
                    )
                getattr(msg, field.name).extend(items)
            else:
                getattr(msg, field.name).CopyFrom(draw(messages(field.message_type, depth + 1)))
            continue
        if repeated:  # a few values, or many short ones
            count = draw(st.one_of(st.integers(0, 4), st.sampled_from([1000, 10_001])))
            values = [draw(_scalar(field, short=True)) for _ in range(min(count, 4))]
            getattr(msg, field.name).extend((values * count)[:count] if values else [])
        else:
            value = draw(_scalar(field))
            # A closed enum may refuse an unknown number: then the field stays unset.
            with contextlib.suppress(ValueError, TypeError):
                setattr(msg, field.name, value)
    return msg


@st.composite
def hostile_bytes(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """Bytes that are no valid ``descriptor`` message, or barely one."""
    valid = draw(messages(descriptor)).SerializeToString()
    kind = draw(st.sampled_from(["random", "truncated", "bad-utf8", "flipped"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=256))
    if kind == "truncated" and len(valid) > 1:
        return valid[: draw(st.integers(1, len(valid) - 1))]
    if kind == "bad-utf8":
        strings = [f for f in descriptor.fields if f.type == F.TYPE_STRING]
        if strings:
            f = draw(st.sampled_from(strings))
            tag = (f.number << 3) | 2
            return _varint(tag) + b"\x03\xff\xfe\xfd" + valid
    flipped = bytearray(valid or b"\x00")
    i = draw(st.integers(0, len(flipped) - 1))
    flipped[i] ^= draw(st.integers(1, 255))
    return bytes(flipped)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
