"""``llm-control``: the control service process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pydantic import ValidationError

from control_service.app import start_control
from control_service.errors import StoreError
from control_service.settings import ControlSettings
from llmcore.logs import configure_logging
from llmcore.serving import run_until_signalled


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="llm-control", description="Control service of the LLM gateway (desired state)"
    )
    p.add_argument("--host", help="listen address (LLM_CONTROL_HOST)")
    p.add_argument("--port", type=int, help="listen port, 0 for any (LLM_CONTROL_PORT)")
    p.add_argument("--db", type=Path, help="SQLite state file (LLM_CONTROL_DB_PATH)")
    p.add_argument(
        "--store",
        help="sqlite (default) or etcd://host:port,host:port,... (LLM_CONTROL_STORE; docs/ha.md)",
    )
    p.add_argument("--config", type=Path, help="YAML settings file (LLM_CONTROL_CONFIG_FILE)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(settings: ControlSettings) -> None:
    try:
        app = await start_control(settings)
    except (ValueError, StoreError) as exc:  # no credentials at all, a store in use
        raise SystemExit(f"llm-control: {exc}") from None
    version = app.controller.current.version
    where = settings.store or settings.db_path
    await run_until_signalled(
        app.stop,
        f"llm-control ready on {settings.host}:{app.port} (state v{version}, {where})",
        f"ending router sessions, draining calls for up to {settings.grace_period_s:.0f}s",
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    configure_logging(args.log_level)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.db:
        overrides["db_path"] = args.db
    if args.store:
        overrides["store"] = args.store
    if args.config:
        overrides["config_file"] = args.config
    try:
        settings = ControlSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SystemExit(f"llm-control: invalid settings:\n{exc}") from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
