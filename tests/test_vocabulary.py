"""The shared vocabulary matches the proto enums, both ways."""

from __future__ import annotations

from clients.gen.llmgateway.v1 import common_pb2
from llmcore.vocabulary import (
    PROVIDER_FROM_PROTO,
    PROVIDER_TO_PROTO,
    PROVIDERS,
    TASK_FROM_PROTO,
    TASK_TO_PROTO,
    TASKS,
)


def _proto_names(
    enum: common_pb2._ProviderEnumTypeWrapper | common_pb2._TaskEnumTypeWrapper, prefix: str
) -> set[str]:
    return {
        n.removeprefix(prefix).lower()
        for n in (v.name for v in enum.DESCRIPTOR.values)
        if not n.endswith("UNSPECIFIED")
    }


def test_every_proto_provider_has_a_name_and_back() -> None:
    assert _proto_names(common_pb2.Provider, "PROVIDER_") == set(PROVIDERS)
    for name in PROVIDERS:
        assert PROVIDER_FROM_PROTO[PROVIDER_TO_PROTO[name]] == name
    assert PROVIDER_TO_PROTO["vllm"] == common_pb2.PROVIDER_VLLM


def test_every_proto_task_has_a_name_and_back() -> None:
    assert _proto_names(common_pb2.Task, "TASK_") == set(TASKS)
    for name in TASKS:
        assert TASK_FROM_PROTO[TASK_TO_PROTO[name]] == name
    assert TASK_TO_PROTO["retrieval_evaluation"] == common_pb2.TASK_RETRIEVAL_EVALUATION
    assert common_pb2.TASK_UNSPECIFIED not in TASK_FROM_PROTO
