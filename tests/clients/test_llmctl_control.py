"""llmctl's control verbs, run in-process (in a worker thread) against a real control service
on 127.0.0.1:0 over a SQLite file in ``tmp_path``; engine probes go to ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from clients.cli._control_common import UsageError
from clients.cli._control_flags import parse_assignments
from clients.cli._values import snapshot_dict, snapshot_rows
from clients.cli.main import main
from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from clients.llm import ControlClient, RouterError
from control_service.app import ControlApp, start_control
from control_service.settings import ControlSettings
from llmcore.vocabulary import ProviderName
from router_service.app import start_router
from router_service.providers import OllamaProvider, OpenAICompatProvider, Provider
from router_service.settings import RouterSettings
from tests._wait import wait_for as wait_until
from tests.router.fake_engine import FakeEngine

TOKEN = "s3cret-operator-token"


@dataclass
class Control:
    app: ControlApp
    http: httpx.AsyncClient

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    async def close(self) -> None:
        await self.app.stop(0)
        await self.http.aclose()


async def start(db: Path, **overrides: Any) -> Control:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_path": db,
        "grace_period_s": 0.5,
        "ollama_base_url": "http://ollama.test",
        "vllm_base_url": "http://vllm.test",
        "probe_cache_s": 0.0,
        # llmctl's behaviour without credentials; the secured fixture sets a token instead.
        "insecure": "auth_token" not in overrides,
        **overrides,
    }
    app = await start_control(ControlSettings(**settings), http_client=http)
    return Control(app, http)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMCTL_CONTROL", "LLMCTL_TOKEN", "LLMCTL_TARGET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMCTL_TOKEN_FILE", "")  # not a make-run token lying in .run/
    monkeypatch.setenv("USER", "tester")


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Control]:
    c = await start(tmp_path / "control.db")
    yield c
    await c.close()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Control]:
    c = await start(tmp_path / "control.db", auth_token=TOKEN)
    yield c
    await c.close()


async def llmctl(control: Control | str, *argv: str) -> int:
    """Runs ``llmctl ARGV --control TARGET`` in a worker thread (the service runs on this loop)."""
    target = control if isinstance(control, str) else control.target
    return await asyncio.to_thread(main, ["--timeout", "10", *argv, "--control", target])


async def llmctl_json(
    control: Control, capsys: pytest.CaptureFixture[str], *argv: str
) -> dict[str, Any]:
    status = await llmctl(control, *argv, "-o", "json")
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    document: dict[str, Any] = json.loads(out)
    return document


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(control: Control, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        await control.app.hub.wait_for(predicate)


class RawRouter:
    """One RouterSession driven by hand: hello, then the ACK/NACKs the test sends."""

    def __init__(self, target: str, router_id: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self._outbox: asyncio.Queue[control_pb2.RouterSessionRequest | None] = asyncio.Queue()
        hello = control_pb2.RouterHello(router_id=router_id, address=f"{router_id}.test:50051")
        self._outbox.put_nowait(control_pb2.RouterSessionRequest(hello=hello))
        stub = control_pb2_grpc.ControlServiceStub(self.channel)
        self.call = stub.RouterSession(self._requests())

    async def _requests(self) -> AsyncIterator[control_pb2.RouterSessionRequest]:
        while (msg := await self._outbox.get()) is not None:
            yield msg

    async def next_snapshot(self) -> control_pb2.ConfigSnapshot:
        resp = await self.call.read()
        assert isinstance(resp, control_pb2.RouterSessionResponse), resp
        return resp.snapshot

    def ack(self, version: int) -> None:
        self._outbox.put_nowait(
            control_pb2.RouterSessionRequest(ack=control_pb2.ConfigAck(version=version))
        )

    def nack(self, version: int, reason: str) -> None:
        self._outbox.put_nowait(
            control_pb2.RouterSessionRequest(
                nack=control_pb2.ConfigNack(version=version, reason=reason)
            )
        )

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()
        await self.channel.close()


# --- status ---------------------------------------------------------------------------------


async def test_status_table_and_json_on_a_fresh_service(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "status") == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith("version       1 (changed ")
    assert lines[1] == "phase         facade (split steps 10, 30, 70)"
    assert lines[2:] == [
        "status        active",
        "vllm traffic  0%",
        "mirroring     off",
        "routers       0 connected, 0 synced",
    ]

    document = await llmctl_json(control, capsys, "status")
    assert document["version"] == 1
    assert document["phase"] == "facade"
    assert document["status"] == "active"
    assert document["vllm_traffic_percent"] == 0
    assert document["split_steps"] == [10, 30, 70]
    assert document["mirroring"] is False
    assert document["routers"] == []
    assert document["created_at"].endswith("+00:00")
    assert (document["automatic_rollbacks"], document["last_rollback_at"]) == (0, None)


async def test_status_lists_routers_with_their_applied_version(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    router = RawRouter(control.target, "r1")
    try:
        snap = await router.next_snapshot()
        router.ack(snap.version)
        await wait_for(control, lambda: control.app.hub.synced(snap.version) == ["r1"])

        document = await llmctl_json(control, capsys, "status")
        assert document["routers_connected"] == document["routers_synced"] == 1
        [info] = document["routers"]
        assert info["router_id"] == "r1"
        assert info["state"] == "synced"
        assert info["applied_version"] == snap.version
        assert info["connected"] is True

        assert await llmctl(control, "status") == 0
        out, _ = capsys.readouterr()
        assert "routers       1 connected, 1 synced" in out
        header, row = out.splitlines()[-2:]
        assert header.split() == ["ROUTER", "STATE", "APPLIED", "CONNECTED", "LAST", "SEEN"]
        assert row.split()[:4] == ["r1", "synced", str(snap.version), "yes"]
        assert row.endswith("s ago")
    finally:
        await router.close()


async def test_status_watch_reprints_on_change(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    watch = asyncio.create_task(
        llmctl(
            control, "status", "--watch", "--interval", "0.02", "--watch-count", "2", "-o", "json"
        )
    )
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capsys.readouterr().out
        return bool(out)

    await wait_until(printed, 5, what="the first print: the state before the change", interval=0.01)
    async with ControlClient(control.target) as client:
        await client.promote(actor="tester", reason="watch me")
    assert await watch == 0
    out += capsys.readouterr().out
    first, second = (json.loads(line) for line in out.splitlines())
    assert (first["version"], first["phase"]) == (1, "facade")
    assert (second["version"], second["phase"]) == (2, "shadow")
    assert (first["mirroring"], second["mirroring"]) == (False, True)


async def test_status_watch_table_prints_a_header_per_change(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "status", "--watch", "--watch-count", "1") == 0
    out, _ = capsys.readouterr()
    assert out.startswith("--- ")
    assert "phase         facade" in out


# --- the migration verbs ---------------------------------------------------------------------


async def test_full_walk_facade_shadow_split_primary(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    walk = [("shadow", 0, 0.0), ("split", 10, 10.0), ("split", 30, 30.0), ("split", 70, 70.0)]
    for version, (phase, weight, share) in enumerate(walk, start=2):
        document = await llmctl_json(control, capsys, "promote", "--reason", f"to {phase}")
        assert document["action"] == "promote"
        assert document["version"] == version
        assert (document["phase"], document["split_weight_percent"]) == (phase, weight)
        assert document["vllm_traffic_percent"] == share
        # SHADOW mirrors by itself; SPLIT only when the flags ask for it.
        assert document["mirroring"] is (phase == "shadow")

    # The step into PRIMARY needs the go/no-go gate (no data here) or --force with a reason.
    assert await llmctl(control, "promote", "--reason", "to primary") == 3
    assert "the go/no-go gate says INCONCLUSIVE" in capsys.readouterr().err
    assert await llmctl(control, "promote", "--force", "--reason", "to primary") == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "promote: ok, config version 6"
    assert lines[2] == "phase         primary (split steps 10, 30, 70)"
    assert lines[3:] == ["status        active", "vllm traffic  100%", "mirroring     off"]

    document = await llmctl_json(control, capsys, "status")
    assert (document["phase"], document["vllm_traffic_percent"], document["version"]) == (
        "primary",
        100.0,
        6,
    )


async def test_promote_full_goes_to_primary(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    document = await llmctl_json(control, capsys, "promote", "--full", "--force", "--reason", "go")
    assert (document["phase"], document["vllm_traffic_percent"]) == ("primary", 100.0)


async def test_illegal_transition_exits_3_with_the_reason(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "set-weight", "30") == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("llmctl: error: illegal transition: cannot set the weight in ")
    assert "PHASE_FACADE" in err
    assert err.count("\n") == 1
    assert await llmctl(control, "undo") == 3
    assert "cannot undo: already at PHASE_FACADE" in capsys.readouterr().err


async def test_set_weight_table_and_json(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "promote") == 0
    capsys.readouterr()
    assert await llmctl(control, "set-weight", "25", "--reason", "canary") == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == "set_weight: ok, config version 3"
    assert "phase         split 25% (split steps 10, 30, 70)" in out
    assert "vllm traffic  25%" in out

    document = await llmctl_json(control, capsys, "set-weight", "40")
    assert document["action"] == "set_weight"
    assert (document["version"], document["split_weight_percent"]) == (4, 40)
    assert document["vllm_traffic_percent"] == 40.0


async def test_out_of_range_weight_exits_2_naming_the_field(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "promote") == 0
    capsys.readouterr()
    assert await llmctl(control, "set-weight", "100") == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "llmctl: error: invalid argument (1 field(s)):"
    assert lines[1].startswith("llmctl:   weight_percent: must be in [1, 99] (got 100)")


async def test_pause_resume_abort_retry_undo(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):  # split 30
        assert await llmctl(control, "promote") == 0
    capsys.readouterr()

    document = await llmctl_json(control, capsys, "pause", "--reason", "latency spike")
    assert (document["action"], document["status"]) == ("pause", "paused")
    assert document["status_reason"] == "latency spike"
    assert await llmctl(control, "promote") == 3
    assert "the migration is paused; resume first" in capsys.readouterr().err
    assert await llmctl(control, "status") == 0
    assert "status        paused: latency spike" in capsys.readouterr().out

    assert await llmctl(control, "resume") == 0
    out = capsys.readouterr().out
    assert out.startswith("resume: ok, config version ")
    assert "status        active" in out

    document = await llmctl_json(control, capsys, "abort", "--reason", "errors")
    assert (document["status"], document["phase"], document["vllm_traffic_percent"]) == (
        "aborted",
        "facade",
        0.0,
    )
    assert (document["aborted_phase"], document["aborted_weight_percent"]) == ("split", 30)
    assert await llmctl(control, "status") == 0
    out = capsys.readouterr().out
    assert "phase         facade (aborted from split 30%)" in out
    assert "status        aborted: errors" in out
    assert await llmctl(control, "promote") == 3
    assert "aborted" in capsys.readouterr().err

    document = await llmctl_json(control, capsys, "retry")
    assert (document["status"], document["phase"], document["split_weight_percent"]) == (
        "active",
        "split",
        30,
    )

    document = await llmctl_json(control, capsys, "undo")
    assert (document["phase"], document["split_weight_percent"]) == ("split", 10)
    assert await llmctl(control, "undo", "--to", "facade") == 0
    out = capsys.readouterr().out
    assert out.startswith("undo: ok")
    assert "phase         facade (split steps" in out
    assert await llmctl(control, "undo", "--to", "shadow") == 3
    assert "is not earlier than PHASE_FACADE" in capsys.readouterr().err


async def test_undo_rejects_an_unknown_phase_as_usage(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        await llmctl(control, "undo", "--to", "primary")
    assert exc.value.code == 2
    assert "unknown phase 'primary'" in capsys.readouterr().err


async def test_cas_conflict_exits_4_and_changes_nothing(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "promote", "--expected-version", "1") == 0
    capsys.readouterr()
    assert await llmctl(control, "promote", "--expected-version", "1") == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "llmctl: error: version conflict: expected version 1 but the current version is 2; "
        "re-read the state and retry\n"
    )
    document = await llmctl_json(control, capsys, "status")
    assert (document["version"], document["phase"]) == (2, "shadow")
    assert await llmctl(control, "promote", "--expected-version", "2") == 0


async def test_actor_and_reason_reach_the_audit_log(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "promote", "--reason", "go") == 0
    assert await llmctl(control, "pause", "--actor", "alice", "--reason", "lunch") == 0
    capsys.readouterr()
    document = await llmctl_json(control, capsys, "history", "--limit", "2")
    pause, promote = document["events"]
    assert (pause["actor"], pause["action"], pause["reason"]) == ("alice", "pause", "lunch")
    assert promote["actor"] == f"tester@{socket.gethostname()}"
    assert (promote["action"], promote["reason"]) == ("promote", "go")


# --- auth -----------------------------------------------------------------------------------


async def test_auth_errors_exit_5(
    secured: Control,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert await llmctl(secured, "promote") == 5
    err = capsys.readouterr().err
    assert err.startswith("llmctl: error: not authenticated: ")
    assert err.endswith("(pass --token or set $LLMCTL_TOKEN)\n")

    assert await llmctl(secured, "promote", "--token", "wrong") == 5
    assert capsys.readouterr().err == (
        "llmctl: error: permission denied: the bearer token is not valid "
        "(check --token or $LLMCTL_TOKEN)\n"
    )

    assert await llmctl(secured, "flags", "set", "shadow_enabled=true", "--token", "x") == 5
    capsys.readouterr()

    # Reads need a credential too (issue 21); the right token (flag, environment or the
    # token file make run writes) is accepted.
    assert await llmctl(secured, "status") == 5
    capsys.readouterr()
    assert await llmctl(secured, "status", "--token", TOKEN) == 0
    assert await llmctl(secured, "promote", "--token", TOKEN) == 0
    capsys.readouterr()
    token_file = tmp_path / "llmctl.token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("LLMCTL_TOKEN_FILE", str(token_file))
    assert await llmctl(secured, "status") == 0
    capsys.readouterr()
    monkeypatch.setenv("LLMCTL_TOKEN", TOKEN)
    document = await llmctl_json(secured, capsys, "promote")
    assert document["phase"] == "split"


# --- flags ----------------------------------------------------------------------------------


async def test_flags_get_table_and_json(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "flags", "get") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "config version 1"
    assert lines[1].split() == ["FLAG", "VALUE"]
    # An empty string value (shadow_semantic.model: "the embedding task's model") prints empty.
    rows = {cells[0]: cells[1] for cells in ((*line.split(), "") for line in lines[2:])}
    assert rows["shadow_semantic.model"] == ""
    assert rows["primary_provider"] == "ollama"
    assert rows["fallback_provider"] == "vllm"
    assert rows["synthesis_provider"] == "primary"
    assert rows["shadow_enabled"] == "false"
    assert rows["rollback.error_rate"] == "0.05"
    assert rows["rollback.latency_p95_ms"] == "5000"

    document = await llmctl_json(control, capsys, "flags", "get")
    assert document["version"] == 1
    flags = document["flags"]
    assert flags["embedding_provider"] == "ollama"
    assert flags["shadow_sample_rate"] == pytest.approx(0.05)
    assert flags["rollback"]["window_seconds"] == 300


async def test_flags_set_changes_only_the_named_fields(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await llmctl(
            control,
            "flags",
            "set",
            "shadow_enabled=true",
            "shadow_sample_rate=0.1",
            "rollback.error_rate=0.02",
            "synthesis_provider=vllm",
            "fallback_provider=none",
            "--reason",
            "tune",
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "update_flags: ok, config version 2",
        "shadow_enabled       true",
        "shadow_sample_rate   0.1",
        "rollback.error_rate  0.02",
        "synthesis_provider   vllm",
        "fallback_provider    none",
    ]
    flags = (await llmctl_json(control, capsys, "flags", "get"))["flags"]
    assert flags["shadow_enabled"] is True
    assert flags["synthesis_provider"] == "vllm"
    assert flags["fallback_provider"] == "none"
    assert flags["rollback"]["error_rate"] == pytest.approx(0.02)
    assert flags["rollback"]["latency_p95_ms"] == 5000  # untouched sibling

    # (embedding_provider off Ollama needs embedding parity: tests/e2e/test_embedding_parity.py)
    document = await llmctl_json(
        control,
        capsys,
        "flags",
        "set",
        "rollback.min_requests=10",
        "classification_provider=ollama",
    )
    assert document["action"] == "update_flags"
    assert document["version"] == 3
    assert document["changed"] == ["rollback.min_requests", "classification_provider"]
    assert document["flags"]["rollback"]["min_requests"] == 10
    assert document["flags"]["classification_provider"] == "ollama"


async def test_flags_set_value_the_service_refuses_exits_2_naming_the_field(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await llmctl(control, "flags", "set", "shadow_sample_rate=2", "rollback.error_rate=7") == 2
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "llmctl: error: invalid argument (2 field(s)):",
        "llmctl:   flags.shadow_sample_rate: must be in [0, 1] (got 2)",
        "llmctl:   flags.rollback.error_rate: must be in [0, 1] (got 7)",
    ]
    assert (await llmctl_json(control, capsys, "status"))["version"] == 1


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("shadow_sample_rate=abc", "shadow_sample_rate: 'abc' is not a number"),
        ("shadow_enabled=maybe", "shadow_enabled: 'maybe' is not a boolean"),
        ("rollback.latency_p95_ms=1.5", "rollback.latency_p95_ms: '1.5' is not an integer"),
        ("synthesis_provider=openai", "synthesis_provider: unknown value 'openai'"),
        ("shadow_sample_rate=nan", "shadow_sample_rate: 'nan' is not a finite number"),
        ("bogus=1", "unknown flag 'bogus'"),
        ("rollback.bogus=1", "unknown flag 'rollback.bogus'"),
        ("rollback=1", "rollback is a group; set its fields"),
        ("shadow_enabled", "expected KEY=VALUE, got 'shadow_enabled'"),
    ],
)
async def test_flags_set_bad_input_exits_2_without_calling(
    control: Control, capsys: pytest.CaptureFixture[str], assignment: str, message: str
) -> None:
    assert await llmctl(control, "flags", "set", assignment) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"llmctl: error: flags set: {message}")
    assert err.count("\n") == 1
    assert (await llmctl_json(control, capsys, "status"))["version"] == 1


async def test_flags_set_rejects_a_key_given_twice(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "flags", "set", "shadow_enabled=1", "shadow_enabled=0") == 2
    assert "shadow_enabled is given twice" in capsys.readouterr().err


# --- history --------------------------------------------------------------------------------


async def test_history_shows_the_changes_newest_first(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "promote", "--reason", "shadow now") == 0
    assert await llmctl(control, "set-weight", "20") == 0
    assert await llmctl(control, "flags", "set", "shadow_sample_rate=0.2") == 0
    capsys.readouterr()

    assert await llmctl(control, "history") == 0
    out, err = capsys.readouterr()
    assert err == ""
    header, *rows = out.splitlines()
    assert header.split() == ["VERSION", "TIME", "ACTOR", "ACTION", "REASON", "CHANGE"]
    assert [row.split()[0] for row in rows] == ["4", "3", "2", "1"]
    assert "update_flags" in rows[0]
    assert "flags.shadow_sample_rate: 0.05 -> 0.2" in rows[0]
    assert "migration.split_weight_percent: 0 -> 20" in rows[1]
    assert "shadow now" in rows[2]
    assert "migration.phase: FACADE -> SHADOW" in rows[2]
    assert "init" in rows[3]

    document = await llmctl_json(control, capsys, "history", "--limit", "2")
    assert [e["version"] for e in document["events"]] == [4, 3]
    assert document["next_before_version"] == 3
    assert document["events"][1]["before"] == {
        "migration.phase": "SHADOW",
        "migration.split_weight_percent": 0,
    }
    assert document["events"][1]["after"] == {
        "migration.phase": "SPLIT",
        "migration.split_weight_percent": 20,
    }
    older = await llmctl_json(control, capsys, "history", "--before", "3")
    assert [e["version"] for e in older["events"]] == [2, 1]
    assert older["next_before_version"] == 0

    assert await llmctl(control, "history", "--limit", "1") == 0
    assert capsys.readouterr().err == "llmctl: older events: llmctl history --before 4\n"


async def test_history_pages_past_one_call(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ControlClient(control.target) as client:
        await client.promote()
        for weight in range(11, 26):
            await client.set_weight(weight)
    document = await llmctl_json(control, capsys, "history", "--limit", "100")
    assert [e["version"] for e in document["events"]] == list(range(17, 0, -1))


# --- routers --------------------------------------------------------------------------------


async def test_routers_show_a_nack_with_its_reason(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = RawRouter(control.target, "r-good"), RawRouter(control.target, "r-bad")
    try:
        for router in (good, bad):
            snap = await router.next_snapshot()
            router.ack(snap.version)
        await wait_for(control, lambda: len(control.app.hub.synced(1)) == 2)

        async with ControlClient(control.target) as client:
            await client.promote(reason="shadow")
        for router in (good, bad):
            assert (await router.next_snapshot()).version == 2
        good.ack(2)
        bad.nack(2, "flags.shadow_provider: unknown provider 9")
        await wait_for(
            control,
            lambda: (
                control.app.hub.synced(2) == ["r-good"]
                and (r := control.app.hub.router("r-bad")) is not None
                and r.last_nack_version == 2
            ),
        )

        document = await llmctl_json(control, capsys, "routers")
        assert document["version"] == 2
        by_id = {r["router_id"]: r for r in document["routers"]}
        assert by_id["r-good"]["state"] == "synced"
        assert by_id["r-good"]["applied_version"] == 2
        assert by_id["r-bad"]["state"] == "error"
        assert by_id["r-bad"]["applied_version"] == 1
        assert by_id["r-bad"]["last_sent_version"] == 2
        assert by_id["r-bad"]["last_nack_version"] == 2
        assert by_id["r-bad"]["last_nack_reason"] == "flags.shadow_provider: unknown provider 9"
        assert by_id["r-bad"]["address"] == "r-bad.test:50051"

        assert await llmctl(control, "routers") == 0
        out = capsys.readouterr().out
        summary, header, *rows = out.splitlines()
        assert summary == "config version 2: 2 router(s)"
        assert header.split()[:7] == [
            "ROUTER",
            "ADDRESS",
            "STATE",
            "CONNECTED",
            "APPLIED",
            "SENT",
            "LAST",
        ]
        bad_row = next(row for row in rows if row.startswith("r-bad"))
        assert bad_row.split()[:6] == ["r-bad", "r-bad.test:50051", "error", "yes", "1", "2"]
        assert bad_row.endswith("v2: flags.shadow_provider: unknown provider 9")
        good_row = next(row for row in rows if row.startswith("r-good"))
        assert good_row.endswith(" -")
    finally:
        await good.close()
        await bad.close()


async def test_routers_with_none_known(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "routers") == 0
    assert capsys.readouterr().out == "config version 1: 0 router(s)\n"


# --- health ---------------------------------------------------------------------------------


async def test_health_json_with_a_real_router(
    control: Control, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ollama, vllm = FakeEngine("ollama"), FakeEngine("vllm")
    providers: dict[ProviderName, Provider] = {
        "ollama": OllamaProvider(ollama.client()),
        "vllm": OpenAICompatProvider(vllm.client()),
    }
    settings = RouterSettings(
        host="127.0.0.1",
        port=0,
        grace_period_s=0.5,
        control_address=control.target,
        router_id="r-health",
        config_cache_path=tmp_path / "router.snapshot",
    )
    router = await start_router(settings, providers)
    try:
        await wait_for(control, lambda: control.app.hub.synced(1) == ["r-health"])
        assert router.engines is not None
        await router.engines.probe_all()  # not left to the probe loop's timing
        document = await llmctl_json(
            control, capsys, "health", "--router", f"127.0.0.1:{router.port}"
        )
        assert document["status"] == "ok"
        assert document["control"]["status"] == "ok"
        components = {c["name"]: c["status"] for c in document["control"]["components"]}
        assert components == {
            "store": "ok",
            "engine/ollama": "ok",
            "engine/vllm": "ok",
            "router/r-health": "ok",
        }
        status = document["router"]
        assert status["target"] == f"127.0.0.1:{router.port}"
        assert (status["router_id"], status["config_version"]) == ("r-health", 1)
        assert status["config_state"] == "synced"
        assert status["phase"]
        assert status["error"] is None
        engines = {e["provider"]: e for e in status["engines"]}
        assert set(engines) == {"ollama", "vllm"}
        assert engines["ollama"]["breaker_state"] == "closed"

        assert await llmctl(control, "health", "--router", f"127.0.0.1:{router.port}") == 0
        out = capsys.readouterr().out
        assert out.startswith("overall: ok\n")
        assert f"control {control.target}: ok" in out
        assert f"router 127.0.0.1:{router.port}: " in out
        assert "router id          r-health" in out
    finally:
        await router.stop(0)


async def test_health_reports_an_unreachable_router_and_exits_1(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert await llmctl(control, "--target", dead, "health", "-o", "json") == 1
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "down"
    assert document["control"]["status"] == "ok"
    assert document["router"]["target"] == dead
    assert document["router"]["status"] == "down"
    assert "UNAVAILABLE" in document["router"]["error"]

    document = await llmctl_json(control, capsys, "health", "--no-router")
    assert document["router"] is None
    assert document["status"] == "ok"


async def test_health_reports_a_down_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(503 if r.url.host == "ollama.test" else 200)
        )
    )
    settings = ControlSettings(
        host="127.0.0.1",
        port=0,
        db_path=tmp_path / "c.db",
        ollama_base_url="http://ollama.test",
        vllm_base_url="http://vllm.test",
        probe_cache_s=0.0,
        insecure=True,
    )
    control = Control(await start_control(settings, http_client=http), http)
    try:
        assert await llmctl(control, "health", "--no-router") == 1
        out = capsys.readouterr().out
        assert out.startswith("overall: down\n")
        row = next(line for line in out.splitlines() if line.startswith("engine/ollama"))
        assert row.split()[1] == "down"
        assert "HTTP 503" in row
    finally:
        await control.close()


# --- failures -------------------------------------------------------------------------------


async def test_unreachable_control_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert await llmctl(dead, "status") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"llmctl: error: control service unavailable at {dead}: ")
    assert err.count("\n") == 1


async def test_control_address_from_the_environment(
    control: Control, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCTL_CONTROL", control.target)
    assert await asyncio.to_thread(main, ["status", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


async def test_usage_errors_exit_2(control: Control, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        await llmctl(control, "set-weight", "lots")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        await llmctl(control, "promote", "--expected-version", "-1")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        await llmctl(control, "status", "-o", "yaml")
    assert exc.value.code == 2
    capsys.readouterr()


# --- the client library ----------------------------------------------------------------------


async def test_control_client_maps_errors_by_status(control: Control) -> None:
    async with ControlClient(control.target) as client:
        with pytest.raises(RouterError) as exc:
            await client.retry()
        assert exc.value.status_code is grpc.StatusCode.FAILED_PRECONDITION
        assert exc.value.reason == "ILLEGAL_TRANSITION"
        snap = await client.promote(expected_version=1)
        assert snap.migration.phase == control_pb2.PHASE_SHADOW
        with pytest.raises(RouterError) as exc:
            await client.pause(expected_version=1)
        assert exc.value.status_code is grpc.StatusCode.ABORTED
        with pytest.raises(RouterError) as exc:
            await client.update_flags(control_pb2.Flags(), ["nope"])
        assert exc.value.status_code is grpc.StatusCode.INVALID_ARGUMENT
        assert exc.value.field_violations == [("update_mask", "unknown Flags field 'nope'")]
        health = await client.get_health()
        assert health.status == control_pb2.HEALTH_STATUS_OK
        events = await client.list_events(page_size=1)
        assert [e.action for e in events.events] == ["promote"]


def test_flags_set_parses_values_by_field_type() -> None:
    flags, paths = parse_assignments(
        [
            "flags.shadow_enabled=on",
            "shadow_provider=PROVIDER_VLLM",
            "primary_provider=Ollama",
            "classification_provider=unspecified",
            "rollback.window_seconds=600",
            'prompt_policies=[{"model": "qwen3:8b", "systemPrefix": "/no_think"}]',
        ]
    )
    assert paths == [
        "shadow_enabled",
        "shadow_provider",
        "primary_provider",
        "classification_provider",
        "rollback.window_seconds",
        "prompt_policies",
    ]
    assert flags.shadow_enabled is True
    assert flags.shadow_provider == common_pb2.PROVIDER_VLLM
    assert flags.primary_provider == common_pb2.PROVIDER_OLLAMA
    assert flags.classification_provider == control_pb2.COMPONENT_PROVIDER_UNSPECIFIED
    assert flags.rollback.window_seconds == 600
    assert [(p.model, p.system_prefix) for p in flags.prompt_policies] == [
        ("qwen3:8b", "/no_think")
    ]
    cleared, _ = parse_assignments(["prompt_policies=[]"])
    assert list(cleared.prompt_policies) == []


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("prompt_policies=nope", "prompt_policies: 'nope' is not a JSON array"),
        ("prompt_policies={}", "prompt_policies: expected a JSON array"),
        ('prompt_policies=[{"bogus": 1}]', "prompt_policies: "),
        ("prompt_policies.model=x", "prompt_policies is a list; set it whole"),
        ("rollback.min_requests=99999999999", "does not fit a 32-bit integer"),
    ],
)
def test_flags_set_rejects_bad_list_and_integer_values(assignment: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_assignments([assignment])


def test_status_rows_show_automatic_rollbacks_when_there_were_some() -> None:
    snap = control_pb2.ConfigSnapshot(
        version=9,
        migration=control_pb2.MigrationState(
            phase=control_pb2.PHASE_FACADE,
            status=control_pb2.ROLLOUT_STATUS_ABORTED,
            status_reason="error rate 0.2 > 0.05",
            aborted_phase=control_pb2.PHASE_SPLIT,
            aborted_weight_percent=70,
            automatic_rollbacks=2,
            split_steps=[10, 30, 70],
        ),
    )
    snap.migration.last_rollback_at.FromSeconds(1_700_000_000)
    rows = dict(snapshot_rows(snap))
    assert rows["phase"] == "facade (aborted from split 70%) (split steps 10, 30, 70)"
    assert rows["status"] == "aborted: error rate 0.2 > 0.05"
    assert rows["auto rollbacks"].startswith("2 (last ")
    document = snapshot_dict(snap)
    assert (document["aborted_phase"], document["aborted_weight_percent"]) == ("split", 70)
    assert document["automatic_rollbacks"] == 2
    assert document["last_rollback_at"] == "2023-11-14T22:13:20.000+00:00"
