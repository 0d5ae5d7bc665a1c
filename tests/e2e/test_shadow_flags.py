"""The shadow and prompt-policy flags travel from an operator's UpdateFlags to the router."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import control_pb2
from tests.control.conftest import Control, meta, start, violations
from tests.e2e.test_router_control import _close, _converged, _routers


def _update(flags: control_pb2.Flags, *paths: str) -> control_pb2.UpdateFlagsRequest:
    return control_pb2.UpdateFlagsRequest(
        meta=meta(), flags=flags, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )


async def test_shadow_and_prompt_flags_reach_the_router(tmp_path: Path) -> None:
    control: Control = await start(tmp_path / "control.db")
    routers = await _routers(1, control.app.port, tmp_path)
    try:
        flags = control_pb2.Flags(
            shadow_enabled=True,
            shadow_sample_rate=0.5,
            shadow_during_split=True,
            shadow_compare_embeddings=True,
            shadow_capture_content=True,
            prompt_policies=[
                control_pb2.PromptPolicy(model="deepseek-r1:14b", system_prefix="Be brief.")
            ],
        )
        paths = (
            "shadow_enabled",
            "shadow_sample_rate",
            "shadow_during_split",
            "shadow_compare_embeddings",
            "shadow_capture_content",
            "prompt_policies",
        )
        snap = (await control.stub.UpdateFlags(_update(flags, *paths))).snapshot
        assert snap.flags.shadow_during_split
        assert [p.model for p in snap.flags.prompt_policies] == ["deepseek-r1:14b"]
        await _converged(routers, snap.version)
        cfg = routers[0].app.config.current
        assert cfg.shadow_during_split
        assert cfg.shadow_compare_embeddings
        assert cfg.shadow_capture_content
        assert dict(cfg.prompt_prefixes) == {"deepseek-r1:14b": "Be brief."}
        # Durable like every other flag.
        await control.close()
        control = await start(tmp_path / "control.db")
        state = await control.stub.GetState(control_pb2.GetStateRequest())
        assert state.snapshot.flags.shadow_capture_content
        assert state.snapshot.flags.prompt_policies[0].system_prefix == "Be brief."
    finally:
        await _close(routers)
        await control.close()


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (control_pb2.PromptPolicy(model="gpt-17", system_prefix="x"), "model"),
        (control_pb2.PromptPolicy(model="qwen3:8b", system_prefix="  "), "system_prefix"),
    ],
)
async def test_bad_prompt_policy_names_the_field(
    tmp_path: Path, policy: control_pb2.PromptPolicy, field: str
) -> None:
    control = await start(tmp_path / "control.db")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await control.stub.UpdateFlags(
                _update(control_pb2.Flags(prompt_policies=[policy]), "prompt_policies")
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(info.value) == [f"flags.prompt_policies[0].{field}"]
    finally:
        await control.close()
