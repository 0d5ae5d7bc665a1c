"""Python enums for the proto enums, and the conversions in both directions.

The generated proto enums are plain ints at runtime; these ``StrEnum``s give callers readable
values ("vllm", "synthesis") that also serialise to JSON as they are. Each member's name is the
proto value name without its prefix (``TASK_SYNTHESIS`` -> ``Task.SYNTHESIS``), and a test checks
that every proto value has a member.
"""

from __future__ import annotations

import enum
from typing import TypeAlias, TypeVar

from google.protobuf.descriptor import EnumDescriptor

from clients.gen.llmgateway.v1 import common_pb2, router_pb2


class Task(enum.StrEnum):
    """The memOS call site; the router picks a model per task."""

    UNSPECIFIED = "unspecified"
    CLASSIFICATION = "classification"
    ANALYSIS = "analysis"
    SYNTHESIS = "synthesis"
    REFLECTION = "reflection"
    RETRIEVAL_EVALUATION = "retrieval_evaluation"
    VERIFICATION = "verification"
    EMBEDDING = "embedding"


class Provider(enum.StrEnum):
    """An inference engine; ``UNSPECIFIED`` lets the router choose."""

    UNSPECIFIED = "unspecified"
    OLLAMA = "ollama"
    VLLM = "vllm"


class Role(enum.StrEnum):
    """The author of a chat message."""

    UNSPECIFIED = "unspecified"
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.StrEnum):
    """Why generation stopped."""

    UNSPECIFIED = "unspecified"
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"


class ReasoningLevel(enum.StrEnum):
    """Thinking control; ``UNSPECIFIED`` takes the task's default, else the engine's."""

    UNSPECIFIED = "unspecified"
    OFF = "off"
    ON = "on"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    MAX = "max"


class ToolChoiceMode(enum.StrEnum):
    """Whether and which tools the model may call (``UNSPECIFIED`` is auto)."""

    UNSPECIFIED = "unspecified"
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    FUNCTION = "function"


class ErrorCode(enum.IntEnum):
    """The router's error codes (``ErrorInfo.reason``); values equal the proto ``ErrorCode``."""

    INVALID_REQUEST = 4000
    MODEL_NOT_FOUND = 4004
    FEATURE_UNSUPPORTED = 4012
    OVERLOADED = 4029
    ROUTER_INTERNAL = 5000
    LLM_UNAVAILABLE = 5001
    LLM_TIMEOUT = 5002
    LLM_INVALID_RESPONSE = 5003
    EMBEDDING_SERVICE_ERROR = 5004
    SEARCH_PROVIDER_ERROR = 5005

    @property
    def memos_code(self) -> str:
        """The memOS code the router sends in ``ErrorInfo.metadata["code"]``, e.g. ``ERR_5001``."""
        return f"ERR_{self.value}"


TaskLike: TypeAlias = Task | str | int
"""A task as a :class:`Task`, a name ("synthesis", "TASK_SYNTHESIS") or a proto enum value."""
ProviderLike: TypeAlias = Provider | str | int
"""A provider as a :class:`Provider`, a name ("vllm", "PROVIDER_VLLM") or a proto enum value."""
RoleLike: TypeAlias = Role | str | int
"""A role as a :class:`Role`, a name ("user", "ROLE_USER") or a proto enum value."""

_E = TypeVar("_E", bound=enum.StrEnum)

# (python enum, proto enum descriptor, proto value-name prefix)
_PROTO_ENUMS: dict[type[enum.StrEnum], tuple[EnumDescriptor, str]] = {
    Task: (common_pb2.DESCRIPTOR.enum_types_by_name["Task"], "TASK_"),
    Provider: (common_pb2.DESCRIPTOR.enum_types_by_name["Provider"], "PROVIDER_"),
    Role: (router_pb2.DESCRIPTOR.enum_types_by_name["Role"], "ROLE_"),
    FinishReason: (router_pb2.DESCRIPTOR.enum_types_by_name["FinishReason"], "FINISH_REASON_"),
    ReasoningLevel: (
        common_pb2.DESCRIPTOR.enum_types_by_name["ReasoningLevel"],
        "REASONING_LEVEL_",
    ),
    ToolChoiceMode: (
        router_pb2.DESCRIPTOR.enum_types_by_name["ToolChoiceMode"],
        "TOOL_CHOICE_MODE_",
    ),
}


def proto_enum_descriptor(enum_type: type[enum.StrEnum]) -> tuple[EnumDescriptor, str]:
    """The proto enum descriptor and value-name prefix that ``enum_type`` mirrors."""
    return _PROTO_ENUMS[enum_type]


def parse_enum(enum_type: type[_E], value: _E | str | int) -> _E:
    """Converts a member, a name in any case (with or without the proto prefix) or a proto value.

    Raises ``ValueError`` for anything else, naming the accepted values.
    """
    if isinstance(value, enum_type):
        return value
    descriptor, prefix = _PROTO_ENUMS[enum_type]
    if isinstance(value, int):
        proto_value = descriptor.values_by_number.get(value)
        if proto_value is not None:
            return enum_type[proto_value.name.removeprefix(prefix)]
    elif isinstance(value, str):
        name = value.strip().upper().replace("-", "_").removeprefix(prefix)
        if name in enum_type.__members__:
            return enum_type[name]
    accepted = ", ".join(member.value for member in enum_type)
    raise ValueError(f"invalid {enum_type.__name__.lower()} {value!r}; expected one of: {accepted}")


def from_proto(enum_type: type[_E], number: int) -> _E:
    """The member for a proto enum number; unknown numbers (a newer router) map to UNSPECIFIED."""
    descriptor, prefix = _PROTO_ENUMS[enum_type]
    proto_value = descriptor.values_by_number.get(number)
    if proto_value is None:
        return enum_type["UNSPECIFIED"]
    return enum_type[proto_value.name.removeprefix(prefix)]


def parse_error_code(reason: str) -> ErrorCode | None:
    """The code for an ``ErrorInfo.reason`` ("LLM_UNAVAILABLE"); None when it is unknown."""
    return ErrorCode.__members__.get(reason.removeprefix("ERROR_CODE_"))
