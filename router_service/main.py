"""``llm-router``: the router process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pydantic import ValidationError

from llmcore.logs import configure_logging
from llmcore.serving import run_until_signalled
from router_service.app import start_router
from router_service.settings import RouterSettings


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llm-router", description="gRPC LLM router for memOS")
    p.add_argument("--host", help="listen address (LLM_ROUTER_HOST)")
    p.add_argument("--port", type=int, help="listen port, 0 for any (LLM_ROUTER_PORT)")
    p.add_argument("--config", type=Path, help="YAML settings file (LLM_ROUTER_CONFIG_FILE)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(settings: RouterSettings) -> None:
    app = await start_router(settings)
    await run_until_signalled(
        app.stop,
        f"llm-router ready on {settings.host}:{app.port}",
        f"draining in-flight streams for up to {settings.grace_period_s:.0f}s",
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    configure_logging(args.log_level)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.config:
        overrides["config_file"] = args.config
    try:
        settings = RouterSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SystemExit(f"llm-router: invalid settings:\n{exc}") from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
