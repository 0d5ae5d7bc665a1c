"""The wrapper covers the proto: every RPC has a method on both clients, every enum a mirror."""

from __future__ import annotations

import enum
import re

import pytest
from google.protobuf.descriptor import MethodDescriptor

import clients.llm
from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm import (
    ErrorCode,
    FinishReason,
    Provider,
    Role,
    RouterClient,
    SyncRouterClient,
    Task,
)
from clients.llm._enums import parse_enum, proto_enum_descriptor

ROUTER_SERVICE = router_pb2.DESCRIPTOR.services_by_name["RouterService"]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("client_type", [RouterClient, SyncRouterClient])
@pytest.mark.parametrize("method", list(ROUTER_SERVICE.methods), ids=lambda m: m.name)
def test_every_rpc_has_a_wrapper_method(
    client_type: type[object], method: MethodDescriptor
) -> None:
    name = _snake_case(method.name)
    assert callable(getattr(client_type, name, None)), f"{client_type.__name__} lacks {name}()"


def test_service_has_the_rpcs_the_clients_wrap() -> None:
    assert [m.name for m in ROUTER_SERVICE.methods] == ["Generate", "Embed", "GetStatus"]


@pytest.mark.parametrize("enum_type", [Task, Provider, Role, FinishReason])
def test_python_enums_mirror_every_proto_value(enum_type: type[enum.StrEnum]) -> None:
    descriptor, prefix = proto_enum_descriptor(enum_type)
    proto_names = {v.name.removeprefix(prefix) for v in descriptor.values}
    assert proto_names == set(enum_type.__members__)
    for value in descriptor.values:
        member = parse_enum(enum_type, value.number)
        assert member.name == value.name.removeprefix(prefix)
        assert parse_enum(enum_type, value.name) is member
        assert parse_enum(enum_type, member.value) is member


def test_error_codes_mirror_the_proto() -> None:
    proto = {
        v.name.removeprefix("ERROR_CODE_"): v.number
        for v in common_pb2.ErrorCode.DESCRIPTOR.values
        if v.number != 0
    }
    assert proto == {member.name: member.value for member in ErrorCode}
    assert ErrorCode.LLM_UNAVAILABLE.memos_code == "ERR_5001"
    assert ErrorCode.INVALID_REQUEST.memos_code == "ERR_4000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("synthesis", Task.SYNTHESIS),
        ("SYNTHESIS", Task.SYNTHESIS),
        ("TASK_SYNTHESIS", Task.SYNTHESIS),
        ("retrieval-evaluation", Task.RETRIEVAL_EVALUATION),
        (common_pb2.TASK_VERIFICATION, Task.VERIFICATION),
        (Task.EMBEDDING, Task.EMBEDDING),
    ],
)
def test_parse_task_accepts_members_names_and_proto_values(
    value: Task | str | int, expected: Task
) -> None:
    assert parse_enum(Task, value) is expected


def test_parse_enum_rejects_unknown_values_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of: unspecified, ollama, vllm"):
        parse_enum(Provider, "openai")
    with pytest.raises(ValueError, match="invalid provider 99"):
        parse_enum(Provider, 99)


def test_public_names_are_exported() -> None:
    for name in clients.llm.__all__:
        assert hasattr(clients.llm, name), name
    assert len(set(clients.llm.__all__)) == len(clients.llm.__all__)
