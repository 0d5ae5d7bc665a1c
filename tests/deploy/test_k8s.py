"""deploy/k8s against the Kubernetes API schemas (offline: the ``kubernetes-validate`` dev
dependency bundles them) and against the code: probes, ports, settings, tokens, image user."""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings

from control_service.app import SERVICE_NAME as CONTROL_SERVICE
from control_service.settings import ControlSettings
from router_service.app import SERVICE_NAME as ROUTER_SERVICE
from router_service.settings import RouterSettings
from tests.deploy._support import (
    K8S_DIR,
    console_scripts,
    dockerfile_instructions,
    k8s_documents,
    k8s_object,
    k8s_objects,
    named_port,
    only_container,
    service_env,
)

NAMESPACE = "llmgateway"
# The oldest Kubernetes these manifests are meant for (native gRPC probes are GA since 1.27;
# 1.30 is the oldest minor still maintained by the major providers), and the newest bundled.
VERSIONS = ("1.30.0", f"{latest_version()}.0")


def _ids() -> list[str]:
    return [f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in k8s_documents()]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("index", range(len(k8s_documents())), ids=_ids())
def test_manifest_passes_the_strict_schema(index: int, version: str) -> None:
    _, doc = k8s_documents()[index]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc.message}")


def test_every_object_is_namespaced_and_labelled() -> None:
    for path, doc in k8s_documents():
        meta = doc["metadata"]
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == NAMESPACE, f"{path.name}: {meta['name']}"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "llmgateway"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == NAMESPACE
    images = {i["name"] for i in kustomization["images"]}
    for kind in ("Deployment", "StatefulSet"):
        for workload in k8s_objects(kind):
            image = only_container(workload)["image"]
            assert image.rsplit(":", 1)[0] in images, f"kustomize cannot retag {image}"


# ------------------------------------------------------------------- router


def _grpc_probe(container: dict[str, Any], kind: str) -> dict[str, Any]:
    probe: dict[str, Any] = container[kind]["grpc"]
    return probe


def test_router_probes_are_native_grpc_health_checks() -> None:
    container = only_container(k8s_object("Deployment", "llm-router"))
    port = named_port(container, "grpc")
    assert port == RouterSettings.model_fields["port"].default
    for kind in ("readinessProbe", "livenessProbe"):
        assert _grpc_probe(container, kind) == {"port": port, "service": ROUTER_SERVICE}


def test_control_probes_are_native_grpc_health_checks() -> None:
    control = k8s_object("StatefulSet", "llm-control")
    container = only_container(control)
    port = named_port(container, "grpc")
    assert port == ControlSettings.model_fields["port"].default
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _grpc_probe(container, kind) == {"port": port, "service": CONTROL_SERVICE}


def test_metrics_ports_are_reserved() -> None:
    router = only_container(k8s_object("Deployment", "llm-router"))
    control = only_container(k8s_object("StatefulSet", "llm-control"))
    assert named_port(router, "metrics") == 9464
    assert named_port(control, "metrics") == 9465


def test_router_replicas_belong_to_the_autoscaler() -> None:
    deployment = k8s_object("Deployment", "llm-router")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = k8s_object("HorizontalPodAutoscaler", "llm-router")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        "llm-router",
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    # Utilisation is relative to the request: the container must have one.
    assert only_container(deployment)["resources"]["requests"]["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2


def test_disruption_budget_covers_the_routers() -> None:
    pdb = k8s_object("PodDisruptionBudget", "llm-router")
    labels = k8s_object("Deployment", "llm-router")["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    hpa = k8s_object("HorizontalPodAutoscaler", "llm-router")
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_router_drains_within_its_termination_grace() -> None:
    deployment = k8s_object("Deployment", "llm-router")
    container = only_container(deployment)
    env = _env(container)
    grace = float(env.get("LLM_ROUTER_GRACE_PERIOD_S", "10"))
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        grace + pre_stop
    )


# ------------------------------------------------------------------- control


def test_control_is_a_single_writer_with_a_volume_for_sqlite() -> None:
    control = k8s_object("StatefulSet", "llm-control")
    assert control["spec"]["replicas"] == 1
    (claim,) = control["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    container = only_container(control)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    db_path = _env(container)["LLM_CONTROL_DB_PATH"]
    assert db_path.startswith(mounts[claim["metadata"]["name"]] + "/")
    governing = k8s_object("Service", control["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"


# ------------------------------------------------------------------- services and wiring


def test_services_select_their_pods_and_name_container_ports() -> None:
    pods = {
        "llm-router": only_container(k8s_object("Deployment", "llm-router")),
        "llm-control": only_container(k8s_object("StatefulSet", "llm-control")),
    }
    labels = {
        "llm-router": k8s_object("Deployment", "llm-router")["spec"]["template"]["metadata"],
        "llm-control": k8s_object("StatefulSet", "llm-control")["spec"]["template"]["metadata"],
    }
    seen = set()
    for service in k8s_objects("Service"):
        if service["metadata"]["name"] == "vllm":
            continue  # the engine pool's pods are not in these manifests (test below)
        selector = service["spec"]["selector"]
        (owner,) = [n for n, m in labels.items() if selector.items() <= m["labels"].items()]
        seen.add(owner)
        for port in service["spec"]["ports"]:
            assert named_port(pods[owner], port["targetPort"]) == port["port"]
    assert seen == set(pods)


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain environment: its ConfigMaps, then its own literal values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        data = k8s_object("ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({k: str(v) for k, v in data.items()})
    for item in container.get("env") or ():
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def _secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        item["name"]: (ref["name"], ref["key"])
        for item in container.get("env") or ()
        if (ref := (item.get("valueFrom") or {}).get("secretKeyRef"))
    }


def _secret_value(name: str, key: str) -> str:
    secret = k8s_object("Secret", name)
    value: str = (secret.get("stringData") or {})[key]
    return value


def _accepted(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names = {prefix + f.upper() for f in cls.model_fields}
    for field in cls.model_fields.values():
        choices = getattr(field.validation_alias, "choices", ())
        names |= {c.upper() for c in choices if isinstance(c, str)}
    return names


@pytest.mark.parametrize(
    ("kind", "name", "cls"),
    [("Deployment", "llm-router", RouterSettings), ("StatefulSet", "llm-control", ControlSettings)],
)
def test_environment_names_settings_fields_and_loads(
    kind: str, name: str, cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = only_container(k8s_object(kind, name))
    env = _env(container)
    env.update({v: _secret_value(*ref) for v, ref in _secret_refs(container).items()})
    env.update(
        {i["name"]: "pod-0" for i in container["env"] if "fieldRef" in i.get("valueFrom", {})}
    )
    accepted = _accepted(cls)
    for var in env:
        if not var.startswith("OTEL_"):
            assert var in accepted, f"{name}: {var} is no field of {cls.__name__}"
    for var in list(os.environ):
        if var.startswith(("LLM_ROUTER_", "LLM_CONTROL_", "OLLAMA_", "VLLM_")):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings: Any = cls()
    assert settings.host == "0.0.0.0"
    assert settings.port == named_port(container, "grpc")


def test_routers_dial_the_control_service() -> None:
    env = _env(only_container(k8s_object("Deployment", "llm-router")))
    host, _, port = env["LLM_ROUTER_CONTROL_ADDRESS"].rpartition(":")
    service_name, namespace, *_ = host.split(".")
    assert namespace == NAMESPACE
    service = k8s_object("Service", service_name)
    (grpc_port,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert int(port) == grpc_port["port"]
    assert service["spec"]["selector"]["app.kubernetes.io/name"] == "llm-control"


def test_router_token_comes_from_the_secret_the_control_service_checks() -> None:
    router = _secret_refs(only_container(k8s_object("Deployment", "llm-router")))
    control = _secret_refs(only_container(k8s_object("StatefulSet", "llm-control")))
    assert router["LLM_ROUTER_CONTROL_TOKEN"] == control["LLM_CONTROL_ROUTER_TOKEN"]
    assert control["LLM_CONTROL_AUTH_TOKEN"] != control["LLM_CONTROL_ROUTER_TOKEN"]


def test_secrets_hold_placeholders_only() -> None:
    for secret in k8s_objects("Secret"):
        assert "data" not in secret, "base64 data hides what is in it: use stringData"
        for key, value in secret["stringData"].items():
            assert value.startswith("REPLACE-ME"), f"{secret['metadata']['name']}.{key}"
            assert "BEGIN" not in value


def test_tls_material_is_mounted_where_the_settings_would_read_it() -> None:
    control = k8s_object("StatefulSet", "llm-control")
    container = only_container(control)
    volumes = {v["name"]: v for v in control["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    secret = k8s_object("Secret", volumes["tls"]["secret"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["stringData"])
    assert mount["readOnly"] is True
    assert {"tls_cert_file", "tls_key_file", "tls_client_ca_file"} <= set(
        ControlSettings.model_fields
    )


def test_k8s_and_compose_route_the_same_models() -> None:
    env = _env(only_container(k8s_object("Deployment", "llm-router")))
    compose = service_env("gpu", "router")["LLM_ROUTER_ENGINE_MODEL_NAMES"]
    assert json.loads(env["LLM_ROUTER_ENGINE_MODEL_NAMES"]) == json.loads(compose)


# ------------------------------------------------------------------- the image


def _image_uid() -> int:
    (user,) = [i.args for i in dockerfile_instructions() if i.keyword == "USER"]
    return int(user.split(":")[0])


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "llm-router"), ("StatefulSet", "llm-control")]
)
def test_pods_run_the_image_as_its_unprivileged_user(kind: str, name: str) -> None:
    workload = k8s_object(kind, name)
    pod = workload["spec"]["template"]["spec"]
    container = only_container(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    assert pod["securityContext"]["fsGroup"] == _image_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["command"][0] in console_scripts()
    assert re.fullmatch(r"llmgateway:[\w.-]+", container["image"])
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", "/var/lib/llmgateway"} <= writable


def test_routers_find_the_vllm_pool_through_a_headless_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vllm = k8s_object("Service", "vllm")
    assert vllm["spec"]["clusterIP"] == "None"
    assert vllm["spec"]["publishNotReadyAddresses"] is False
    (port,) = vllm["spec"]["ports"]
    env = _env(only_container(k8s_object("Deployment", "llm-router")))
    for var in list(os.environ):
        if var.startswith(("LLM_ROUTER_", "OLLAMA_", "VLLM_")):
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = RouterSettings()
    url = urlsplit(settings.vllm_dns_url)
    assert url.hostname == f"vllm.{NAMESPACE}.svc.cluster.local"
    assert url.port == port["port"]
    assert settings.replica_urls("vllm") == []  # DNS only: no stray default replica
