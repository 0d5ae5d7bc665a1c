"""``llmctl generate`` with thinking, JSON, tools, images, engine options and a timeout, against
the real router and the simulators."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest

from clients.cli.main import main
from tests.agentic.support import Stack, png, stack

__all__ = ["stack"]


async def llmctl(stack: Stack, *argv: str) -> int:
    return await asyncio.to_thread(
        main, ["--target", f"127.0.0.1:{stack.app.port}", "--timeout", "10", *argv]
    )


async def test_text_mode_keeps_reasoning_off_stdout(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await llmctl(stack, "generate", "why?", "--task", "analysis", "--think")
    out, err = capsys.readouterr()
    assert status == 0
    assert out.strip()
    assert "Okay" not in out  # the simulated reasoning starts with "Okay"
    assert "Okay" in err
    assert "reasoning_tokens=" in err


async def test_json_output_has_reasoning_tool_calls_and_finish_details(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tool = tmp_path / "search.json"
    tool.write_text(
        json.dumps(
            {
                "name": "search_memory",
                "description": "Search the memory graph",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            }
        )
    )
    status = await llmctl(
        stack,
        "generate",
        "Use search_memory please",
        "--task",
        "analysis",
        "--provider",
        "vllm",
        "--think",
        "high",
        "--tool",
        str(tool),
        "-o",
        "json",
    )
    out, _ = capsys.readouterr()
    assert status == 0
    doc = json.loads(out)
    assert doc["reasoning"]
    assert doc["finish_reason"] == "tool_calls"
    assert doc["raw_finish_reason"] == "tool_calls"
    [call] = doc["tool_calls"]
    assert call["name"] == "search_memory"
    assert isinstance(call["arguments"]["query"], str)
    assert doc["usage"]["reasoning_tokens"] > 0
    assert doc["timings"]["time_to_first_reasoning_ms"] > 0


async def test_json_schema_image_and_options(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    schema_file = tmp_path / "label.json"
    schema_file.write_text(json.dumps(schema))
    status = await llmctl(
        stack, "generate", "label it", "--json-schema", str(schema_file), "-o", "json"
    )
    doc = json.loads(capsys.readouterr().out)
    assert status == 0
    jsonschema.validate(json.loads(doc["text"]), schema)
    assert stack.wire("ollama")["params"]["format"] == schema
    image = tmp_path / "p.png"
    image.write_bytes(png())
    status = await llmctl(
        stack, "generate", "what is it?", "--task", "reflection", "--image", str(image)
    )
    assert status == 0
    assert capsys.readouterr().out.strip()
    status = await llmctl(
        stack, "generate", "q", "--provider", "ollama", "--option", "num_ctx=32", "--json"
    )
    assert status == 0
    assert json.loads(capsys.readouterr().out.strip())
    assert stack.wire("ollama")["options"]["num_ctx"] == 32


async def test_bad_flags_exit_2_naming_them(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exc:
        await llmctl(stack, "generate", "q", "--option", "num_ctx")
    assert exc.value.code == 2
    assert "--option" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit) as exc:
        await llmctl(stack, "generate", "q", "--json-schema", str(bad))
    assert exc.value.code == 2
    assert "must be an object" in capsys.readouterr().err
    # The router refuses what the engine cannot do: FAILED_PRECONDITION, one line, exit 2.
    status = await llmctl(stack, "generate", "q", "--provider", "vllm", "--option", "num_ctx=8")
    err = capsys.readouterr().err
    assert status != 0
    assert "engine_options" in err


async def test_the_generate_timeout_is_the_calls_deadline(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sims["ollama"].faults.slow_first_token_ms = 3000
    status = await llmctl(stack, "generate", "q", "--timeout", "0.3")
    assert status != 0
    assert "DEADLINE" in capsys.readouterr().err.upper()
