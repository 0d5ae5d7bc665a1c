"""The migration drill: walks the seed's plan (section 5.4) through the control API with a
memOS-like load running, injects vLLM faults through the simulator's admin API, and checks what
an operator expects at every step. Every control call is one ``llmctl`` would make; the
equivalent command line is printed before it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO

import httpx

from clients.cli.api import (
    format_table,
    gate_document,
    gate_lines,
    parse_assignments,
    phase_label,
    report_lines,
    status_label,
)
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient, RouterClient
from llmtools.drill._load import TRANSITION, Load, engines, vllm_share
from llmtools.drill._meaning import meaning_step
from llmtools.drill._parity import shadow_checks
from llmtools.drill._results import (
    DrillConfig,
    DrillResult,
    DrillTargets,
    Rollback,
    StepResult,
    number_cell,
    share_tolerance,
    summary_lines,
)
from llmtools.drill._view import View

ACTOR = "drill"

# Fast windows (as tests/e2e/test_rollback.py): a 10 s window, 8 samples; seed thresholds.
ROLLBACK_FLAGS = (
    "rollback.error_rate=0.05",
    "rollback.latency_p95_ms=5000",
    "rollback.window_seconds=10",
    "rollback.min_requests=8",
    "rollback.cooldown_seconds=0",
    "rollback.max_automatic_rollbacks=5",
    "rollback.health_failure_threshold=2",
    "rollback.health_success_threshold=1",
)
SHADOW_FLAGS = (
    "shadow_enabled=true",
    "shadow_sample_rate=0.5",
    "shadow_during_split=true",
    "shadow_compare_embeddings=true",
)


class Drill:
    def __init__(self, targets: DrillTargets, config: DrillConfig, out: TextIO) -> None:
        self.t = targets
        self.c = config
        self.out = out
        self.control = ControlClient(targets.control, timeout=10)
        self.routers = [RouterClient(a, timeout=30) for a in targets.routers]
        self.http = httpx.AsyncClient(timeout=5)
        self.load = Load(
            self.routers,
            concurrency=config.concurrency,
            max_tokens=config.max_tokens,
            run_id=f"drill-{secrets.token_hex(3)}",
        )
        live = config.live if config.live is not None else out.isatty()
        self.view = View(out, self.load, self.control, live=live)
        self.result = DrillResult()
        self._n = 0

    # --- narration and expectations ---------------------------------------------------------

    def step(self, title: str) -> None:
        self._n += 1
        self.view.say("", f"==> {self._n}. {title}")

    def cmd(self, *words: str) -> None:
        line = " ".join(shlex.quote(w) for w in words)
        self.view.say(f"    $ {line}")

    def llmctl(self, verb: str, *args: str) -> None:
        self.cmd("llmctl", *verb.split(), "--control", self.t.control, *args)

    def expect(self, name: str, ok: bool, detail: str) -> None:
        self.result.expectations.append((name, ok, detail))
        self.view.say(f"    [{'ok' if ok else 'FAILED'}] {name}: {detail}")

    # --- control ----------------------------------------------------------------------------

    async def converged(self, within: float = 10.0) -> control_pb2.GetStateResponse:
        """Every router ACKed the current version."""
        deadline = time.monotonic() + within
        while True:
            state = await self.control.get_state()
            v = state.snapshot.version
            live = [r for r in state.routers if r.connected]
            if len(live) >= len(self.routers) and all(r.applied_version >= v for r in live):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"routers did not apply config v{v} within {within:.0f}s")
            await asyncio.sleep(0.05)

    async def change(self, call: Callable[[], Awaitable[object]]) -> control_pb2.GetStateResponse:
        """A control change; new calls count for no step until every router runs it."""
        self.load.step = TRANSITION
        await call()
        state = await self.converged()
        m = state.snapshot.migration
        self.view.say(
            f"    -> v{state.snapshot.version}: {phase_label(m.phase).upper()} "
            f"vLLM {state.snapshot.vllm_traffic_percent:.0f}% ({status_label(m.status)}), "
            f"{len(state.routers)} router(s) applied it"
        )
        return state

    async def set_flags(self, assignments: Sequence[str], reason: str) -> None:
        self.llmctl("flags set", *assignments, "--reason", reason)
        flags, paths = parse_assignments(assignments)
        await self.change(
            lambda: self.control.update_flags(flags, paths, actor=ACTOR, reason=reason)
        )

    async def dwell(self, name: str, seconds: float, weight: float | None) -> StepResult:
        self.load.step = name
        await asyncio.sleep(seconds)
        result = StepResult(name, weight, self.load.of_step(name))
        self.result.steps.append(result)
        if weight is not None:
            share, answered, queries = vllm_share(result.calls)
            tol = share_tolerance(weight, queries, self.c.share_tolerance)
            self.expect(
                f"{name}: vLLM share",
                answered > 0 and abs(share * 100 - weight) <= tol * 100,
                f"{share * 100:.1f}% of {answered} generate calls ({queries} queries), "
                f"weight {weight:.0f}% +/- {tol * 100:.1f}",
            )
        return result

    # --- faults -----------------------------------------------------------------------------

    async def faults(self, url: str, body: dict[str, Any]) -> None:
        self.cmd(
            "curl", "-X", "PUT", f"{url}/sim/faults", "-H", "content-type: application/json",
            "-d", json.dumps(body),
        )  # fmt: skip
        r = await self.http.put(f"{url}/sim/faults", json=body)
        r.raise_for_status()

    async def wait_rolled_back(self, fault: str) -> Rollback:
        started = time.monotonic()
        limit = self.c.rollback_within_s * 3
        while time.monotonic() - started < limit:
            state = await self.control.get_state()
            if state.snapshot.migration.status == control_pb2.ROLLOUT_STATUS_ABORTED:
                rb = Rollback(fault, time.monotonic() - started)
                break
            await asyncio.sleep(0.05)
        else:
            rb = Rollback(fault, None)
        self.result.rollbacks.append(rb)
        if rb.seconds is None:
            self.expect(f"rollback after {fault}", False, f"none within {limit:.0f}s")
            return rb
        await self.converged()
        rb.rule = await self.print_evidence()
        self.expect(
            f"rollback after {fault}",
            rb.seconds <= self.c.rollback_within_s,
            f"{rb.seconds:.2f}s from the fault (stated: within {self.c.rollback_within_s:.0f}s)",
        )
        return rb

    async def print_evidence(self) -> str:
        self.llmctl("history", "--limit", "3")
        events = (await self.control.list_events(page_size=5)).events
        event = next((e for e in events if e.action == "rollback"), None)
        if event is None:
            self.view.say("    (no rollback event in the audit log)")
            return ""
        evidence: dict[str, Any] = json.loads(event.after_json).get("evidence", {})
        rows = [
            [
                r["rule"],
                r["outcome"],
                number_cell(r.get("value")),
                number_cell(r.get("threshold")),
                str(r.get("samples", "-")),
                str(r.get("detail", ""))[:70],
            ]
            for r in evidence.get("rules", [])
        ]
        self.view.say(
            f"    v{event.version} {event.action} by {event.actor}: {event.reason}",
            *(
                "      " + line
                for line in format_table(
                    ["RULE", "OUTCOME", "VALUE", "THRESHOLD", "SAMPLES", "DETAIL"], rows
                )
            ),
        )
        acting: list[str] = evidence.get("acting_rules", [])
        return ",".join(acting)

    async def wait_vllm_back(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                r = await self.http.get(f"{self.t.vllm_url}/health")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("vLLM did not come back")

    # --- the plan ---------------------------------------------------------------------------

    async def run(self) -> DrillResult:
        c = self.c
        self.view.say(
            f"migration drill: control {self.t.control}, router(s) {', '.join(self.t.routers)}",
            f"  ollama {self.t.ollama_url}  vllm {self.t.vllm_url}",
            f"  load: {c.concurrency} memOS-like queries at once, each 9 calls (embedding, "
            "classification, analysis x2, retrieval evaluation, synthesis, reflection x2, "
            "verification) sharing one request id and routing key",
        )
        await self.converged()
        self.step("fast rollback windows for the drill (10 s, 8 samples; seed thresholds)")
        await self.set_flags(ROLLBACK_FLAGS, "drill: fast rollback windows")
        self.load.start()
        self.view.start()
        try:
            await self._walk()
        finally:
            await self.load.stop()
            await self.view.stop()
        errors = self.load.errors
        self.result.user_visible_errors = errors
        self.result.calls = len(self.load.calls)
        self.expect(
            "zero user-visible errors (Ollama healthy throughout)",
            errors == 0,
            f"{errors} of {len(self.load.calls)} calls failed",
        )
        return self.result

    async def _walk(self) -> None:
        c, ctl = self.c, self.control
        self.step("FACADE: everything on Ollama")
        self.llmctl("status")
        await self.dwell("FACADE", c.short_dwell_s, 0)

        self.step("SHADOW: mirror a sample to vLLM, compare, answer from Ollama")
        self.llmctl("promote", "--reason", "drill: shadow")
        await self.change(lambda: ctl.promote(actor=ACTOR, reason="drill: shadow"))
        await self.set_flags(SHADOW_FLAGS, "drill: shadow comparisons")
        await self.dwell("SHADOW", c.short_dwell_s, 0)
        self.llmctl("shadow report", "--worst", "3")
        report = await ctl.get_shadow_report(worst=3)  # at most 3 come back
        self.view.say(*("    " + line for line in report_lines(report, 0)))
        for name, ok, detail in shadow_checks(report):
            self.expect(name, ok, detail)
        if c.meaning:
            await meaning_step(self)

        for weight in (10, 30, 70):
            self.step(f"SPLIT {weight}%")
            self.llmctl("promote", "--reason", f"drill: split {weight}")
            step_reason = f"drill: split {weight}"
            await self.change(functools.partial(ctl.promote, actor=ACTOR, reason=step_reason))
            await self.dwell(f"SPLIT {weight}%", c.dwell_s, weight)

        if c.trace:
            self._pick_traced_query()

        self.step("inject a vLLM fault: every request fails with HTTP 503")
        await self.faults(self.t.vllm_url, {"error_rate": 1.0, "error_status": 503})
        self.load.step = "FAULT 503"
        await self.wait_rolled_back("vLLM error_rate=1")
        self.result.steps.append(StepResult("FAULT 503", None, self.load.of_step("FAULT 503")))
        await self.dwell("ABORTED", c.short_dwell_s, 0)

        self.step("clear the fault, retry: back to the aborted SPLIT weight")
        await self.faults(self.t.vllm_url, {"error_rate": 0.0})
        self.llmctl("retry", "--reason", "drill: fault cleared")
        await self.change(lambda: ctl.retry(actor=ACTOR, reason="drill: fault cleared"))
        await self.dwell("SPLIT 70% (retry)", c.dwell_s, 70)

        self.step("go/no-go gate, then PRIMARY")
        self.llmctl("gonogo")
        gate = await ctl.evaluate_go_no_go()
        document = gate_document(gate)
        self.view.say(*("    " + line for line in gate_lines(document)))
        if gate.verdict == control_pb2.VERDICT_GO:
            reason = "drill: gate GO"
            self.llmctl("promote", "--reason", reason)
            await self.change(lambda: ctl.promote(actor=ACTOR, reason=reason))
        else:
            not_go = [
                f"{x['name']} {x['verdict']}" for x in document["criteria"] if x["verdict"] != "go"
            ]
            reason = (
                "drill on simulators: no GPU telemetry, so VRAM stability cannot be shown "
                f"({', '.join(not_go)})"
            )
            self.view.say(
                f"    gate says {document['verdict'].upper()}: {', '.join(not_go)}.",
                "    The simulators run without a GPU, so the VRAM criterion cannot be GO: "
                "promoting with --force and a reason (audited).",
            )
            self.llmctl("promote", "--force", "--reason", reason)
            await self.change(lambda: ctl.promote(force=True, actor=ACTOR, reason=reason))
        await self.dwell("PRIMARY", c.dwell_s, 100)

        self.step(f"vLLM outage: the simulator refuses connections for {c.outage_s:.0f}s")
        outage_ms = int(c.outage_s * 1000)
        await self.faults(
            self.t.vllm_url, {"refuse_connections": True, "refuse_connections_ms": outage_ms}
        )
        outage_started = time.monotonic()
        self.load.step = "OUTAGE"
        await self.wait_rolled_back("vLLM outage")
        await asyncio.sleep(max(0.0, c.outage_s - (time.monotonic() - outage_started)))
        self.result.steps.append(StepResult("OUTAGE", None, self.load.of_step("OUTAGE")))
        outage = self.load.of_step("OUTAGE")
        fallbacks = sum(1 for x in outage if x.fallback)
        self.expect(
            "outage absorbed by the Ollama fallback",
            engines(outage)["error"] == 0 and len(outage) > 0,
            f"{len(outage)} calls during the outage, {engines(outage)['error']} failed, "
            f"{fallbacks} answered by the fallback",
        )

        self.step("vLLM back: retry into PRIMARY")
        await self.wait_vllm_back()
        self.llmctl("retry", "--reason", "drill: vLLM back")
        await self.change(lambda: ctl.retry(actor=ACTOR, reason="drill: vLLM back"))
        await self.dwell("PRIMARY (retry)", c.short_dwell_s, 100)
        state = await ctl.get_state()
        self.expect(
            "ends in PRIMARY, active",
            state.snapshot.migration.phase == control_pb2.PHASE_PRIMARY
            and state.snapshot.migration.status == control_pb2.ROLLOUT_STATUS_ACTIVE,
            f"{phase_label(state.snapshot.migration.phase).upper()} "
            f"({status_label(state.snapshot.migration.status)})",
        )

    def _pick_traced_query(self) -> None:
        query = self.load.queries_started + self.c.concurrency
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        self.load.traced[query] = f"00-{trace_id}-{span_id}-01"
        rid = self.load.request_id(query)
        self.result.traced_request_id = rid
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        if endpoint:
            self.view.say(
                f"    trace: query {query}, request id {rid}, trace id {trace_id} "
                f"(traceparent sent; spans exported to {endpoint}): look it up in Jaeger, "
                f"e.g. http://localhost:16686/trace/{trace_id}"
            )
        else:
            self.view.say(
                f"    trace: query {query}, request id {rid}; OTEL_EXPORTER_OTLP_ENDPOINT is "
                "not set, so no trace is exported: find the request id in the router's logs "
                "and the simulators' GET /sim/requests (x_request_id)"
            )

    async def close(self) -> None:
        for r in self.routers:
            await r.close()
        await self.control.close()
        await self.http.aclose()


async def run_drill(
    targets: DrillTargets, config: DrillConfig, out: TextIO = sys.stdout
) -> DrillResult:
    """Runs the drill against a running stack; prints as it goes and the summary at the end."""
    drill = Drill(targets, config, out)
    try:
        result = await drill.run()
    finally:
        await drill.close()
    out.write("\n".join(summary_lines(result)) + "\n")
    out.flush()
    return result
