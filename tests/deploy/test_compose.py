"""deploy/docker-compose.yml against the code: Docker Compose accepts it for both profiles, and
every service, port, volume, environment variable and command it names exists here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from control_service.app import SERVICE_NAME as CONTROL_SERVICE
from control_service.settings import ControlSettings
from llmsim import Flavor
from llmsim.main import build_config, parse_args
from router_service.app import SERVICE_NAME as ROUTER_SERVICE
from router_service.catalog import DEFAULT_ENGINE_NAMES, DEFAULT_FALLBACKS, DEFAULT_TASK_MODELS
from router_service.settings import RouterSettings
from tests.deploy._support import (
    COMPOSE_FILE,
    DEPLOY,
    HEALTHCHECK_COMMAND,
    OUR_IMAGE_SERVICES,
    PROFILES,
    REPO,
    compose_variables,
    console_scripts,
    container_ports,
    env_example,
    network_names,
    raw_compose,
    run_compose,
    service_env,
    services,
)

GPU_ONLY = {"ollama", "ollama-pull", "vllm", "vllm-2", "control"}
SIM_ONLY = {"ollama-sim", "vllm-sim", "vllm-sim-2", "control-sim"}
BOTH = {"router", "jaeger", "prometheus", "grafana"}
# The etcd profile adds to either (tests/deploy/test_compose_etcd.py).
ETCD_ONLY = {"etcd", "control-2"}
ROUTER_METRICS_PORT, CONTROL_METRICS_PORT = 9464, 9465
# Standard OpenTelemetry SDK variables the services are given (read by the SDK, not by us).
OTEL_VARS = {
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
}
SIM_SOURCE = REPO / "llmsim" / "main.py"


def _settings_for(service: str) -> type[BaseSettings] | None:
    command = services("sim" if service.endswith("-sim") else "gpu")[service]["command"]
    by_script: dict[str, type[BaseSettings]] = {
        "llm-router": RouterSettings,
        "llm-control": ControlSettings,
    }
    return by_script.get(command[0])


def _env_name(cls: type[BaseSettings], field: str) -> set[str]:
    """The environment names a settings field answers to: prefix + name, and its aliases."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = {(prefix + field).upper()}
    alias = cls.model_fields[field].validation_alias
    choices = getattr(alias, "choices", ())
    names |= {c.upper() for c in choices if isinstance(c, str)}
    return names


def _accepted_env(cls: type[BaseSettings]) -> set[str]:
    return {n for f in cls.model_fields for n in _env_name(cls, f)}


def _load(cls: type[BaseSettings], env: dict[str, str], mp: pytest.MonkeyPatch) -> Any:
    import os

    for name in list(os.environ):
        if name.startswith(("LLM_ROUTER_", "LLM_CONTROL_", "OLLAMA_", "VLLM_")):
            mp.delenv(name)
    for name, value in env.items():
        mp.setenv(name, value)
    return cls()


# ------------------------------------------------------------------- the file as Compose sees it


@pytest.mark.parametrize("profile", PROFILES)
def test_docker_compose_accepts_the_file(profile: str) -> None:
    proc = run_compose("--profile", profile, "config", "--quiet")
    assert proc.returncode == 0, proc.stderr


def test_secrets_have_no_default() -> None:
    proc = run_compose("--profile", "sim", "config", "--quiet", env_file=None)
    assert proc.returncode != 0
    assert "OPERATOR_TOKEN" in proc.stderr or "ROUTER_TOKEN" in proc.stderr


def test_raw_file_parses_and_every_service_has_a_profile() -> None:
    raw = raw_compose()
    assert set(raw["services"]) == GPU_ONLY | SIM_ONLY | BOTH | ETCD_ONLY
    for name, svc in raw["services"].items():
        assert svc.get("profiles"), f"{name}: no profile, would start without --profile"


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_runs_engines_or_simulators(profile: str) -> None:
    expected = BOTH | (GPU_ONLY if profile == "gpu" else SIM_ONLY)
    assert set(services(profile)) == expected


def test_simulators_answer_to_the_engines_names() -> None:
    assert network_names("sim")["ollama"] == "ollama-sim"
    assert network_names("sim")["vllm"] == "vllm-sim"
    assert network_names("sim")["vllm-2"] == "vllm-sim-2"
    assert network_names("sim")["control"] == "control-sim"


# ------------------------------------------------------------------- commands and settings


@pytest.mark.parametrize("profile", PROFILES)
def test_our_services_run_console_scripts(profile: str) -> None:
    scripts = console_scripts()
    ours = [s for s in OUR_IMAGE_SERVICES if s in services(profile)]
    assert ours
    for name in ours:
        svc = services(profile)[name]
        assert svc["image"] == services(profile)["router"]["image"], f"{name}: another image"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert Path(svc["build"]["context"]) == REPO
        command = svc["command"]
        assert command[0] in scripts, f"{name}: {command[0]!r} is not a console script"
        if command[0] in ("llm-router", "llm-control"):
            assert command == [command[0]], f"{name}: settings go through the environment"


def test_simulator_commands_parse_with_llm_sim() -> None:
    for name, flavor, port in (
        ("ollama-sim", Flavor.OLLAMA, 11434),
        ("vllm-sim", Flavor.VLLM, 8000),
    ):
        command = services("sim")[name]["command"]
        assert command[0] == "llm-sim"
        config = build_config(parse_args(command[1:]))
        assert config.flavor is flavor
        assert config.host == "0.0.0.0"
        assert config.port == port
        assert port in container_ports(services("sim")[name])


@pytest.mark.parametrize("service", ["router", "control", "control-sim"])
def test_service_environment_names_settings_fields(service: str) -> None:
    profile = "sim" if service.endswith("-sim") else "gpu"
    cls = _settings_for(service)
    assert cls is not None
    accepted = _accepted_env(cls)
    for name in service_env(profile, service):
        if name.startswith(("LLM_ROUTER_", "LLM_CONTROL_")):
            assert name in accepted, f"{service}: {name} is no field of {cls.__name__}"
        elif name.startswith("OTEL_"):
            assert name in OTEL_VARS, f"{service}: unknown OpenTelemetry variable {name}"
        elif name.startswith("NVIDIA_"):
            assert service == "control"
            assert name in {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
        else:
            assert name in accepted, f"{service}: {name} is read by nothing in {cls.__name__}"


def test_simulator_environment_is_read_by_llm_sim() -> None:
    source = SIM_SOURCE.read_text()
    for name in ("ollama-sim", "vllm-sim"):
        for var in service_env("sim", name):
            assert f'"{var}"' in source, f"{name}: llm-sim never reads {var}"


@pytest.mark.parametrize(("profile", "service"), [("gpu", "router"), ("sim", "router")])
def test_router_settings_load_from_the_compose_environment(
    profile: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: RouterSettings = _load(RouterSettings, service_env(profile, service), monkeypatch)
    svc = services(profile)[service]
    assert settings.host == "0.0.0.0"
    assert settings.port == RouterSettings.model_fields["port"].default
    assert settings.port in container_ports(svc)
    assert settings.router_id
    assert settings.config_cache_path is not None
    # The config cache and the engines: on a volume, and names on the network.
    mounts = [Path(v["target"]) for v in svc["volumes"] if v["type"] == "volume"]
    assert any(settings.config_cache_path.is_relative_to(m) for m in mounts)
    names = network_names(profile)
    engines = [(u, 11434) for u in settings.replica_urls("ollama")]
    engines += [(u, 8000) for u in settings.replica_urls("vllm")]
    assert len(settings.replica_urls("vllm")) == 2  # the vLLM pool: two services
    for url, default_port in engines:
        parts = urlsplit(url)
        assert parts.hostname in names, f"{url}: no such service in profile {profile}"
        assert parts.port == default_port
        assert default_port in container_ports(services(profile)[names[parts.hostname]])
    host, _, port = settings.control_address.rpartition(":")
    control = services(profile)[names[host]]
    assert int(port) == ControlSettings.model_fields["port"].default
    assert int(port) in container_ports(control)
    assert control["command"] == ["llm-control"]


@pytest.mark.parametrize(("profile", "service"), [("gpu", "control"), ("sim", "control-sim")])
def test_control_settings_load_from_the_compose_environment(
    profile: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: ControlSettings = _load(ControlSettings, service_env(profile, service), monkeypatch)
    svc = services(profile)[service]
    assert settings.host == "0.0.0.0"
    assert settings.port == ControlSettings.model_fields["port"].default
    assert settings.port in container_ports(svc)
    mounts = [Path(v["target"]) for v in svc["volumes"] if v["type"] == "volume"]
    assert any(settings.db_path.is_relative_to(m) for m in mounts), "SQLite file not on a volume"
    assert settings.auth_token
    assert settings.router_token
    names = network_names(profile)
    for urls in settings.replica_urls().values():
        for url in urls:
            assert urlsplit(url).hostname in names


@pytest.mark.parametrize("profile", PROFILES)
def test_router_and_control_share_the_router_token(profile: str) -> None:
    control = "control" if profile == "gpu" else "control-sim"
    router_token = service_env(profile, "router")["LLM_ROUTER_CONTROL_TOKEN"]
    assert router_token
    assert router_token == service_env(profile, control)["LLM_CONTROL_ROUTER_TOKEN"]
    assert router_token != service_env(profile, control)["LLM_CONTROL_AUTH_TOKEN"]


# ------------------------------------------------------------------- health and start order


@pytest.mark.parametrize("profile", PROFILES)
def test_grpc_healthchecks_ask_the_services_health(profile: str) -> None:
    control = "control" if profile == "gpu" else "control-sim"
    expected = {
        "router": ["CMD", HEALTHCHECK_COMMAND, "grpc", "127.0.0.1:50051", ROUTER_SERVICE],
        control: ["CMD", HEALTHCHECK_COMMAND, "grpc", "127.0.0.1:50061", CONTROL_SERVICE],
    }
    for name, test in expected.items():
        assert services(profile)[name]["healthcheck"]["test"] == test
    assert RouterSettings.model_fields["port"].default == 50051
    assert ControlSettings.model_fields["port"].default == 50061


def test_simulator_healthchecks_use_their_ports() -> None:
    for name in ("ollama-sim", "vllm-sim"):
        svc = services("sim")[name]
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", HEALTHCHECK_COMMAND, "http"]
        assert urlsplit(test[3]).port in container_ports(svc)


@pytest.mark.parametrize("profile", PROFILES)
def test_start_order_waits_for_healthy_dependencies(profile: str) -> None:
    svcs = services(profile)
    router_deps = svcs["router"]["depends_on"]
    control = "control" if profile == "gpu" else "control-sim"
    ollama = "ollama" if profile == "gpu" else "ollama-sim"
    assert router_deps[control]["condition"] == "service_healthy"
    assert router_deps[ollama]["condition"] == "service_healthy"
    for name, svc in svcs.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if dep not in svcs:
                assert spec.get("required") is False, f"{name} needs {dep}, not in {profile}"
                continue
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep}: no healthcheck"


def test_router_drains_before_it_is_killed() -> None:
    grace = RouterSettings.model_fields["grace_period_s"].default
    stop = services("gpu")["router"]["stop_grace_period"]
    assert stop.endswith("s")
    assert float(stop[:-1]) > grace


# ------------------------------------------------------------------- engines, models, GPUs


def test_ollama_runs_with_the_seed_optimisations() -> None:
    env = service_env("gpu", "ollama")
    assert env["OLLAMA_NUM_PARALLEL"] == "4"
    assert env["OLLAMA_KEEP_ALIVE"] == "30m"
    assert env["OLLAMA_KV_CACHE_TYPE"] == "q8_0"
    assert env["OLLAMA_FLASH_ATTENTION"] == "1"
    router = service_env("gpu", "router")
    assert router["LLM_ROUTER_OLLAMA_KEEP_ALIVE"] == env["OLLAMA_KEEP_ALIVE"]
    assert any(v["target"] == "/root/.ollama" for v in services("gpu")["ollama"]["volumes"])


def test_vllm_runs_with_the_seed_flags() -> None:
    command = services("gpu")["vllm"]["command"]
    assert "--enable-prefix-caching" in command
    assert "--gpu-memory-utilization=0.85" in command
    assert "--tensor-parallel-size=1" in command
    assert "--port=8000" in command


def _flag(command: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in command if a.startswith(name + "=")]
    assert len(values) == 1, f"{name} given {len(values)} times"
    return values[0]


@pytest.mark.parametrize("profile", PROFILES)
def test_router_catalogue_names_the_model_vllm_serves(profile: str) -> None:
    names = json.loads(service_env(profile, "router")["LLM_ROUTER_ENGINE_MODEL_NAMES"])
    assert set(names) == set(DEFAULT_ENGINE_NAMES)
    for model, engines in names.items():
        assert engines["ollama"] == DEFAULT_ENGINE_NAMES[model]["ollama"]
    served = {m: e["vllm"] for m, e in names.items() if "vllm" in e}
    # One vLLM container serves one model: the catalogue's twin of Ollama's qwen3:8b.
    assert served == {"qwen3:8b": DEFAULT_ENGINE_NAMES["qwen3:8b"]["vllm"]}
    if profile == "gpu":
        assert _flag(services("gpu")["vllm"]["command"], "--model") == served["qwen3:8b"]
    else:
        config = build_config(parse_args(services("sim")["vllm-sim"]["command"][1:]))
        assert served["qwen3:8b"] in {m.name for m in config.catalogue()}


def test_ollama_pull_covers_the_task_models_and_their_fallbacks() -> None:
    pulled = set(service_env("gpu", "ollama-pull")["OLLAMA_PULL_MODELS"].split())
    needed = set(DEFAULT_TASK_MODELS.values())
    needed |= {f for m in set(needed) for f in DEFAULT_FALLBACKS.get(m, ())}
    assert pulled == needed
    assert services("gpu")["ollama-pull"]["depends_on"]["ollama"]["condition"] == (
        "service_healthy"
    )


def _gpu_devices(svc: dict[str, Any]) -> list[dict[str, Any]]:
    deploy = svc.get("deploy") or {}
    devices: list[dict[str, Any]] = (deploy.get("resources") or {}).get("reservations", {}).get(
        "devices"
    ) or []
    return devices


def test_engines_and_control_get_the_gpu_only_in_the_gpu_profile() -> None:
    for name in ("ollama", "vllm", "vllm-2"):
        (device,) = _gpu_devices(services("gpu")[name])
        assert device["driver"] == "nvidia"
        assert "gpu" in device["capabilities"]
    (device,) = _gpu_devices(services("gpu")["control"])
    assert device["driver"] == "nvidia"
    assert {"gpu", "utility"} <= set(device["capabilities"])
    env = service_env("gpu", "control")
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert env["NVIDIA_VISIBLE_DEVICES"]
    for name, svc in services("sim").items():
        assert not _gpu_devices(svc), f"{name} reserves a GPU in the sim profile"


# ------------------------------------------------------------------- volumes, files, metrics


@pytest.mark.parametrize("profile", PROFILES)
def test_volumes_are_declared_and_bind_mounts_exist(profile: str) -> None:
    model = raw_compose()
    declared = set(model["volumes"])
    for name, svc in services(profile).items():
        for volume in svc.get("volumes") or ():
            if volume["type"] == "volume":
                assert volume["source"] in declared, f"{name}: undeclared volume"
            else:
                assert volume["type"] == "bind"
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} missing"
                assert Path(volume["source"]).is_relative_to(DEPLOY)


@pytest.mark.parametrize("profile", PROFILES)
def test_metrics_ports_are_reserved_and_scraped(profile: str) -> None:
    control = "control" if profile == "gpu" else "control-sim"
    assert ROUTER_METRICS_PORT in container_ports(services(profile)["router"])
    assert CONTROL_METRICS_PORT in container_ports(services(profile)[control])
    prometheus = services(profile)["prometheus"]
    (config,) = [v for v in prometheus["volumes"] if v["target"].endswith("prometheus.yml")]
    scrape = yaml.safe_load(Path(config["source"]).read_text())
    targets = {
        job["job_name"]: t
        for job in scrape["scrape_configs"]
        for cfg in job["static_configs"]
        for t in cfg["targets"]
    }
    assert targets["llm-router"] == f"router:{ROUTER_METRICS_PORT}"
    assert targets["llm-control"] == f"control:{CONTROL_METRICS_PORT}"
    names = network_names(profile)
    for job, target in targets.items():
        host, _, port = target.rpartition(":")
        if host == "localhost":
            continue
        assert host in names, f"scrape job {job}: {host} is no service"
        assert int(port) in container_ports(services(profile)[names[host]])


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    grafana = services("gpu")["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    provisioning = mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())
    urls = {d["type"]: urlsplit(d["url"]) for d in sources["datasources"]}
    assert (urls["prometheus"].hostname, urls["prometheus"].port) == ("prometheus", 9090)
    assert (urls["jaeger"].hostname, urls["jaeger"].port) == ("jaeger", 16686)
    assert 16686 in container_ports(services("gpu")["jaeger"])
    (provider_file,) = (provisioning / "dashboards").glob("*.yaml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    board = json.loads((dashboards / "llmgateway.json").read_text())
    assert board["uid"] == "llmgateway"
    assert {4317, 4318} <= container_ports(services("gpu")["jaeger"])


# ------------------------------------------------------------------- .env.example


def test_env_example_documents_exactly_the_variables_compose_uses() -> None:
    example = env_example()
    assert not example.undocumented, f"no comment above: {example.undocumented}"
    used = compose_variables()
    assert set(used) == set(example.values)


def test_env_example_values_are_the_compose_defaults() -> None:
    example = env_example().values
    for name, uses in compose_variables().items():
        for op, default in uses:
            if op == ":-":
                assert default == example[name], f"{name}: compose {default!r} vs .env.example"
            else:
                assert op == ":?", f"{name}: give it a default or make it required"
                assert example[name].startswith("REPLACE-ME"), f"{name}: a placeholder please"


def test_compose_file_has_no_unescaped_dollar() -> None:
    # A lone $ would be interpolated by Compose; shell variables in commands are written $$.
    lines = [ln for ln in COMPOSE_FILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\$\{[^}]*\}|\$\$", "", "\n".join(lines))
    assert "$" not in text
