"""The compose file's etcd profile (the HA layout, docs/ha.md), added to the sim profile with
the two .env settings it asks for: Docker Compose accepts it, both control replicas load their
settings on etcd and advertise names the router can dial, the router lists both replicas."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from control_service.settings import ControlSettings
from router_service.settings import RouterSettings
from tests.deploy._support import ENV_EXAMPLE, container_ports, run_compose
from tests.deploy.test_compose import _load

HA_ENV = {
    "CONTROL_STORE": "etcd://etcd:2379",
    "ROUTER_CONTROL_ADDRESS": "control:50061,control-2:50061",
}


@functools.cache
def _ha_model(tmp: str) -> dict[str, Any]:
    env_file = Path(tmp) / "ha.env"
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={HA_ENV[name]}" if name in HA_ENV else line)
    env_file.write_text("\n".join(lines) + "\n")
    proc = run_compose(
        "--profile", "sim", "--profile", "etcd", "config", "--format", "json", env_file=env_file
    )
    if proc.returncode != 0:
        pytest.fail(f"docker-compose config --profile sim --profile etcd failed:\n{proc.stderr}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.fixture
def ha(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _ha_model(str(tmp_path_factory.getbasetemp()))


def _env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (svc.get("environment") or {}).items()}


def _names(model: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, svc in model["services"].items():
        names[name] = name
        for net in (svc.get("networks") or {}).values():
            for alias in (net or {}).get("aliases") or ():
                names[alias] = name
    return names


def test_the_etcd_profile_adds_etcd_and_a_second_replica(ha: dict[str, Any]) -> None:
    services = ha["services"]
    assert {"etcd", "control-sim", "control-2", "router"} <= set(services)
    assert 2379 in container_ports(services["etcd"])
    for replica in ("control-sim", "control-2"):
        assert services[replica]["depends_on"]["etcd"]["condition"] == "service_healthy"


@pytest.mark.parametrize("replica", ["control-sim", "control-2"])
def test_each_replica_runs_on_etcd_and_advertises_a_name_on_the_network(
    ha: dict[str, Any], replica: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: ControlSettings = _load(ControlSettings, _env(ha["services"][replica]), monkeypatch)
    names = _names(ha)
    (endpoint,) = settings.etcd_endpoints
    assert names[endpoint.rpartition(":")[0]] == "etcd"
    host, _, port = settings.advertise_address.rpartition(":")
    assert names[host] == replica
    assert int(port) == settings.port
    assert settings.replica_id == replica.removesuffix("-sim")


def test_the_router_lists_every_replica(
    ha: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: RouterSettings = _load(RouterSettings, _env(ha["services"]["router"]), monkeypatch)
    names = _names(ha)
    replicas = {names[a.rpartition(":")[0]] for a in settings.control_address.split(",")}
    assert replicas == {"control-sim", "control-2"}
