"""deploy/k8s/ha, the HA overlay (docs/ha.md), offline: its objects pass the Kubernetes schemas,
the control StatefulSet with the overlay's patch applied is valid and runs three replicas on the
etcd members the etcd StatefulSet creates, advertising names its headless Service resolves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from control_service.settings import ControlSettings
from control_service.store.etcd_url import parse_endpoints
from tests.deploy._support import K8S_DIR, k8s_object, only_container
from tests.deploy.test_k8s import VERSIONS

HA_DIR = K8S_DIR / "ha"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((HA_DIR / name).read_text()) if d]


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((HA_DIR / "kustomization.yaml").read_text())
    return loaded


def _merge_env(base: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A strategic merge of ``env`` (merge key ``name``): patched entries replace, new append."""
    out = [dict(e) for e in base]
    names = [e["name"] for e in out]
    for e in patch:
        if e["name"] in names:
            out[names.index(e["name"])] = e
        else:
            out.append(e)
    return out


def _patched_control() -> dict[str, Any]:
    base = copy.deepcopy(k8s_object("StatefulSet", "llm-control"))
    (patch,) = _docs("control-ha.yaml")
    base["spec"]["replicas"] = patch["spec"]["replicas"]
    base["spec"]["podManagementPolicy"] = patch["spec"]["podManagementPolicy"]
    container = only_container(base)
    (patched,) = patch["spec"]["template"]["spec"]["containers"]
    assert patched["name"] == container["name"]
    container["env"] = _merge_env(container.get("env", []), patched["env"])
    return base


def _ha_objects() -> list[dict[str, Any]]:
    return [*_docs("etcd.yaml"), *_docs("control-pdb.yaml"), _patched_control()]


def test_the_overlay_builds_on_the_base_with_its_files() -> None:
    k = _kustomization()
    listed = {Path(r).name for r in k["resources"] if r != "../"}
    assert "../" in k["resources"]
    assert listed | {p["path"] for p in k["patches"]} | {"kustomization.yaml"} == {
        p.name for p in HA_DIR.glob("*.yaml")
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_every_ha_object_passes_the_strict_schema(version: str) -> None:
    for doc in _ha_objects():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmgateway"
        assert doc["metadata"]["namespace"] == "llmgateway"


def _env(container: dict[str, Any], pod: str) -> dict[str, str]:
    """The container's literal env values with ``$(POD_NAME)`` expanded as the kubelet does."""
    out: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = e["value"].replace("$(POD_NAME)", pod)
    return out


def test_three_control_replicas_on_the_three_etcd_members(monkeypatch: pytest.MonkeyPatch) -> None:
    control = _patched_control()
    assert control["spec"]["replicas"] == 3
    etcd = next(d for d in _docs("etcd.yaml") if d["kind"] == "StatefulSet")
    service = next(d for d in _docs("etcd.yaml") if d["kind"] == "Service")
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["serviceName"] == service["metadata"]["name"]
    members = {f"etcd-{i}.etcd.llmgateway.svc.cluster.local" for i in range(3)}
    command = only_container(etcd)["command"]
    initial = next(a for a in command if a.startswith("--initial-cluster="))
    assert {p.split("=", 1)[1].split("//")[1].rsplit(":", 1)[0] for p in
            initial.removeprefix("--initial-cluster=").split(",")} == members  # fmt: skip

    import os

    for name in list(os.environ):
        if name.startswith("LLM_CONTROL_"):
            monkeypatch.delenv(name)
    env = _env(only_container(control), "llm-control-1")
    for name, value in env.items():
        if name.startswith("LLM_CONTROL_"):
            monkeypatch.setenv(name, value)
    settings = ControlSettings()
    assert {e.rpartition(":")[0] for e in parse_endpoints(settings.store)} == members
    headless = k8s_object("Service", control["spec"]["serviceName"])
    host = settings.advertise_address.rpartition(":")[0]
    assert host == f"llm-control-1.{headless['metadata']['name']}.llmgateway.svc.cluster.local"
    assert settings.replica_id == "llm-control-1"
    assert settings.leader_lease_ttl_s >= 5  # outlasts an etcd election (docs/ha.md)
