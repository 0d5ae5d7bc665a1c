"""Metrics: a REAL Prometheus scrapes a running router and control service; the dashboard's
queries name only metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from clients.llm import RouterError
from control_service.app import start_control
from tests._wait import wait_for
from tests.control.conftest import make_settings as control_settings
from tests.observability.conftest import TracedStack
from tests.router.shadow_support import shadow_config, wait_mirror

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/llmgateway.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exported_names(*registries: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for reg in registries:
        for fam in reg.collect():
            names.update(sample.name for sample in fam.samples)
            names.add(fam.name)
    return names


async def traffic(stack: TracedStack) -> None:
    for i in range(3):
        await stack.client.generate(f"question {i}", request_id=f"m-{i}").collect()
    # vLLM too, so that its prefix cache has been queried (the hit ratio needs queries).
    await stack.client.generate("a question for vllm", provider="vllm").collect()
    await stack.client.embed(["x"])
    mirror = stack.app.shadow
    assert mirror is not None
    stack.app.config.swap(shadow_config(1.0))  # one shadowed request: the similarity series
    await stack.client.generate("shadowed question", request_id="m-shadow").collect()
    await wait_mirror(mirror, lambda: mirror.counters.compared >= 1)
    with pytest.raises(RouterError):  # and one error, so the error counter has a series
        await stack.client.generate("", request_id="m-bad").collect()


@pytest.mark.timeout(60)
async def test_prometheus_scrapes_router_and_control(stack: TracedStack, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus binary is required: apt-get install -y prometheus"
    control = await start_control(
        control_settings(tmp_path / "c.db", metrics_port=0, gpu_backend="fake")
    )
    try:
        await traffic(stack)
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "llm-router",
                    "static_configs": [{"targets": [f"127.0.0.1:{stack.app.metrics_port}"]}],
                },
                {
                    "job_name": "llm-control",
                    "static_configs": [{"targets": [f"127.0.0.1:{control.metrics_port}"]}],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wanted = {
                'gen_ai_client_operation_duration_seconds_count{job="llm-router"}',
                'llm_router_split_decisions_total{job="llm-router"}',
                'llm_router_breaker_state{job="llm-router"}',
                'llm_control_config_version{job="llm-control"}',
                'llm_control_phase{job="llm-control"}',
                'llm_control_gpu_memory_used_bytes{job="llm-control"}',
            }
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

                async def all_scraped() -> bool:
                    for q in list(wanted):
                        try:
                            r = await http.get("/api/v1/query", params={"query": q})
                        except httpx.TransportError:
                            return False  # not listening yet
                        if r.status_code == 200 and r.json()["data"]["result"]:
                            wanted.discard(q)
                    return not wanted

                # Prometheus has no change notification: a bounded poll (tests/_wait.py).
                await wait_for(all_scraped, 40, what=f"Prometheus to have {wanted}", interval=0.5)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        await control.stop(0)


async def test_every_dashboard_query_names_an_exported_metric(
    stack: TracedStack, tmp_path: Path
) -> None:
    control = await start_control(
        control_settings(tmp_path / "c.db", metrics_port=0, gpu_backend="fake")
    )
    try:
        await traffic(stack)
        assert control.vllm_metrics is not None
        control.vllm_metrics._url = stack.vllm.base_url + "/metrics"
        await control.vllm_metrics.read_once()
        names = exported_names(stack.app.registry, control.registry)
    finally:
        await control.stop(0)
    async with httpx.AsyncClient() as http:
        vllm_text = (await http.get(stack.vllm.base_url + "/metrics")).text
    names |= set(re.findall(r"^(vllm:[a-z_:]+?)(?:\{| )", vllm_text, re.M))

    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "llmgateway"
    assert isinstance(board["panels"], list)
    assert board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    exprs: list[str] = []
    for p in board["panels"]:
        assert {"id", "type", "title", "gridPos", "targets"} <= p.keys(), p.get("title")
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys()
        for t in p["targets"]:
            assert t["refId"]
            assert t["expr"]
            exprs.append(t["expr"])
    keywords = {
        "sum",
        "rate",
        "by",
        "histogram_quantile",
        "le",
        "max",
        "avg",
        "without",
        "on",
        "irate",
        "increase",
        "clamp_min",
        "provider",
        "job",
        "state",
        "phase",
        "status",
        "operation",
        "task",
        "model",
        "token_type",
        "outcome",
        "code",
        "event",
        "gpu",
        "name",
        "uuid",
        "shadow_provider",
        "action",
        "rule",
        "or",
        "vector",
        "instance",
        "replica",
        "reason",
    }
    for expr in exprs:
        bare = re.sub(r'"[^"]*"|\[[^\]]*\]|\b\d+(?:\.\d+)?(?:e-?\d+)?\b', "", expr)
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
            if token in keywords:
                continue
            assert token in names, f"{token!r} in {expr!r} is not exported"
