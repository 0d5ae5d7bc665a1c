"""llama.cpp's ``llama-server`` as a real OpenAI-compatible engine (standing in for vLLM) behind
the router, on tiny random-weight models written at test time.

The binary comes from ``scripts/build_llama_server.sh`` (``make test`` builds it when missing,
once; it is cached outside the repository). A missing binary fails these tests loudly: they are
never skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from clients.gen.llmgateway.v1 import router_pb2_grpc
from router_service.app import RouterApp, start_router
from tests.llamacpp.tiny_model import write_tiny_model
from tests.router.conftest import make_settings

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # scripts/build_llama_server.sh's default
# The names the router's catalogue gives qwen3:8b and mxbai-embed-large on vLLM.
CHAT_ALIAS = "Qwen/Qwen3-8B"
EMBED_ALIAS = "mixedbread-ai/mxbai-embed-large-v1"


def llama_server_path() -> Path:
    """Where the build script puts the binary (``LLAMA_SERVER_BIN`` overrides)."""
    given = os.environ.get("LLAMA_SERVER_BIN")
    if given:
        return Path(given)
    cache = os.environ.get("LLMGATEWAY_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmgateway"
    )
    return Path(cache) / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}" / "bin" / "llama-server"


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    path = llama_server_path()
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"llama.cpp's llama-server is missing at {path}: run scripts/build_llama_server.sh "
            "(make test does it; about 8 minutes on 2 cores, once)",
            pytrace=False,
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_llama_server(bin_path: Path, model: Path, log: Path, *args: str) -> LlamaServer:
    """Starts the server on a free port and waits until ``/health`` answers 200 (the model is
    loaded); fails with the server's log when it exits or does not become ready."""
    for _ in range(3):  # the free port may be taken before the server binds it
        port = _free_port()
        argv = [str(bin_path), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as out:  # the server keeps its own descriptor of the log
            process = subprocess.Popen(
                [*argv, "-t", "1", "-np", "2", "-c", "2048", "--no-webui", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = LlamaServer(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                    return server
            time.sleep(0.05)
        server.stop()
        if b"bind" not in log.read_bytes():
            break
    pytest.fail(f"llama-server did not become ready:\n{log.read_text()[-3000:]}", pytrace=False)


@dataclass
class Engines:
    chat: LlamaServer  # reasoning (deepseek format), JSON Schema, logprobs
    tools: LlamaServer  # a model that calls tools, --jinja
    embed: LlamaServer  # --embeddings


@pytest.fixture(scope="session")
def engines(llama_server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    d = tmp_path_factory.mktemp("llamacpp")
    chat_args = ["--jinja", "--reasoning-format", "deepseek", "--reasoning-budget", "8"]
    servers = Engines(
        chat=start_llama_server(
            llama_server_bin,
            write_tiny_model(d / "chat.gguf"),
            d / "chat.log",
            "-a",
            CHAT_ALIAS,
            *chat_args,
        ),
        tools=start_llama_server(
            llama_server_bin,
            write_tiny_model(d / "tools.gguf", tool_caller=True),
            d / "tools.log",
            "-a",
            CHAT_ALIAS,
            *chat_args,
        ),
        embed=start_llama_server(
            llama_server_bin,
            write_tiny_model(d / "embed.gguf", embedder=True),
            d / "embed.log",
            "-a",
            EMBED_ALIAS,
            "--embeddings",
            "--pooling",
            "mean",
        ),
    )
    yield servers
    for s in (servers.chat, servers.tools, servers.embed):
        s.stop()


@dataclass
class Routed:
    app: RouterApp
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub


@contextlib.asynccontextmanager
async def router_for(engine: LlamaServer) -> AsyncIterator[Routed]:
    """A router whose vLLM is ``engine`` (requests pin PROVIDER_VLLM)."""
    app = await start_router(
        make_settings(vllm_base_url=engine.base_url, ollama_base_url=engine.base_url)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        yield Routed(app, channel, router_pb2_grpc.RouterServiceStub(channel))
    finally:
        await channel.close()
        await app.stop(0)
