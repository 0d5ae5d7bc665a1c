"""One vocabulary for providers and tasks, shared by every package.

The names are the lower-case suffixes of the proto enums (``PROVIDER_OLLAMA`` → ``"ollama"``,
``TASK_RETRIEVAL_EVALUATION`` → ``"retrieval_evaluation"``); ``tests/test_vocabulary.py`` checks
them against the generated descriptors, so the proto and this module cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from clients.gen.llmgateway.v1 import common_pb2

ProviderName = Literal["ollama", "vllm"]
TaskName = Literal[
    "classification",
    "analysis",
    "synthesis",
    "reflection",
    "retrieval_evaluation",
    "verification",
    "embedding",
]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)
TASKS: tuple[TaskName, ...] = get_args(TaskName)


def _enum_maps(
    prefix: str, names: tuple[str, ...], enum: Any
) -> tuple[dict[str, int], dict[int, str]]:
    """Name → proto value and back, derived from the generated descriptor; an import-time error
    when a name has no enum value (the proto and this module drifted apart)."""
    to_proto = {name: int(enum.Value(prefix + name.upper())) for name in names}
    return to_proto, {v: k for k, v in to_proto.items()}


PROVIDER_TO_PROTO, _PROVIDER_FROM = _enum_maps("PROVIDER_", PROVIDERS, common_pb2.Provider)
TASK_TO_PROTO, _TASK_FROM = _enum_maps("TASK_", TASKS, common_pb2.Task)
PROVIDER_FROM_PROTO: dict[int, ProviderName] = _PROVIDER_FROM  # type: ignore[assignment]
TASK_FROM_PROTO: dict[int, TaskName] = _TASK_FROM  # type: ignore[assignment]

__all__ = [
    "PROVIDERS",
    "PROVIDER_FROM_PROTO",
    "PROVIDER_TO_PROTO",
    "TASKS",
    "TASK_FROM_PROTO",
    "TASK_TO_PROTO",
    "ProviderName",
    "TaskName",
]
