"""``make run``: the whole stack on one machine, supervised.

Starts the Ollama and vLLM simulators (unless ``OLLAMA_BASE_URL`` / ``VLLM_BASE_URL`` point at
real engines), the control service and the router, each as its own process, and waits until each
answers. A component that exits is restarted with backoff while the others keep running (the
router keeps serving from its last snapshot while the control service comes back with its state);
Ctrl-C or SIGTERM stops everything. Each child's pid and restart count is in
``<run dir>/devstack.json``.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

from llmtools.supervisor import ChildSpec, Supervisor


def _port(env: dict[str, str], name: str, default: int) -> int:
    return int(env.get(name, str(default)))


def local_credentials(router_id: str, run_dir: Path) -> dict[str, str]:
    """Fresh credentials for this stack, so the control service is never open (issue 21): an
    operator, a reader and a router token in ``run_dir/credentials.yaml`` (the control
    service's credentials_file), the operator token in ``run_dir/llmctl.token`` (llmctl's
    default token file). Both 0600; new ones every start. Returns the environment for the
    children (docs/security.md)."""
    operator, reader, router = (secrets.token_urlsafe(32) for _ in range(3))
    creds = run_dir / "credentials.yaml"
    for path, text in (
        (
            creds,
            f"operators: {{devstack: {operator}}}\n"
            f"readers: {{devstack: {reader}}}\n"
            f"routers: {{{router_id}: {router}}}\n",
        ),
        (run_dir / "llmctl.token", operator + "\n"),
    ):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return {
        "LLM_CONTROL_CREDENTIALS_FILE": str(creds),
        "LLM_ROUTER_CONTROL_TOKEN": router,
    }


def main() -> None:
    env = dict(os.environ)
    run_dir = Path(env.get("LLM_DEVSTACK_RUN_DIR", ".run"))
    run_dir.mkdir(parents=True, exist_ok=True)
    ollama_port = _port(env, "SIM_OLLAMA_PORT", 11434)
    vllm_port = _port(env, "SIM_VLLM_PORT", 8000)
    router_port = _port(env, "LLM_ROUTER_PORT", 50051)
    control_port = _port(env, "LLM_CONTROL_PORT", 50061)

    sup = Supervisor(state_file=run_dir / "devstack.json")
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    try:
        if "OLLAMA_BASE_URL" not in env:
            args = ("llmsim.main", "--flavor", "ollama", "--port", str(ollama_port))
            sup.start(ChildSpec("ollama simulator", args, ollama_port, dict(env)))
            env["OLLAMA_BASE_URL"] = f"http://127.0.0.1:{ollama_port}"
        if "VLLM_BASE_URL" not in env:
            args = ("llmsim.main", "--flavor", "vllm", "--port", str(vllm_port))
            sup.start(ChildSpec("vllm simulator", args, vllm_port, dict(env)))
            env["VLLM_BASE_URL"] = f"http://127.0.0.1:{vllm_port}"
        env.setdefault("LLM_ROUTER_ROUTER_ID", "router-1")
        env.update(local_credentials(env["LLM_ROUTER_ROUTER_ID"], run_dir))
        db = run_dir / "control.db"
        control_args = ("control_service.main", "--port", str(control_port), "--db", str(db))
        sup.start(ChildSpec("control service", control_args, control_port, dict(env)))
        env.setdefault("LLM_ROUTER_CONTROL_ADDRESS", f"127.0.0.1:{control_port}")
        env.setdefault(
            "LLM_ROUTER_CONFIG_CACHE_PATH",
            str(run_dir / f"router-{env['LLM_ROUTER_ROUTER_ID']}.snapshot"),
        )
        router_args = ("router_service.main", "--port", str(router_port))
        sup.start(ChildSpec("router", router_args, router_port, dict(env)))
        print(
            "devstack: ready.\n"
            f"  ollama: {env['OLLAMA_BASE_URL']}\n"
            f"  vllm:   {env['VLLM_BASE_URL']}\n"
            f"  router: 127.0.0.1:{router_port} (gRPC)\n"
            f"  control: 127.0.0.1:{control_port} (gRPC; state in {db})\n"
            '  try:    .venv/bin/llmctl generate "Why is the sky blue?"\n'
            f"          .venv/bin/llmctl status   (its token: {run_dir / 'llmctl.token'})\n"
            "  A component that exits is restarted; Ctrl-C stops everything.",
            flush=True,
        )
        sup.run()
    finally:
        sup.shutdown()


if __name__ == "__main__":
    main()
