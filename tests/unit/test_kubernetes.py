"""deploy/kubernetes cannot be applied here (no cluster): every manifest is validated offline
against the Kubernetes API schemas (kubernetes-validate), and checked against the config and
compose files it must agree with."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from rung.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
VERSION = "1.30.0"


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name in ("kustomization.yaml", "production.yaml"):
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d for p, d in manifests() if d["kind"] == kind and "base" in p.parts
    }


@pytest.mark.parametrize(
    ("path", "doc"),
    [m for m in manifests() if "overlays" not in m[0].parts or m[1]["kind"] == "Namespace"],
    ids=lambda v: v.name if isinstance(v, Path) else v["kind"] + "/" + v["metadata"]["name"],
)
def test_every_manifest_is_valid_for_the_kubernetes_api(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)  # raises on any schema error


def test_kustomizations_list_only_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        here = kustomization.parent
        for resource in data.get("resources", []):
            assert (here / resource).exists(), (kustomization, resource)
        for patch in data.get("patches", []):
            target = yaml.safe_load((here / patch["path"]).read_text())
            assert target["metadata"]["name"] in objects(target["kind"]), patch
        for generator in data.get("configMapGenerator", []):
            for name in generator["files"]:
                assert (here / name).exists()


def test_the_configmap_is_config_production_yaml() -> None:
    copy = K8S / "base/production.yaml"
    assert copy.read_text() == (ROOT / "config/production.yaml").read_text(), (
        "cp config/production.yaml deploy/kubernetes/base/production.yaml"
    )


def test_every_tier_backend_is_a_service_of_the_manifests() -> None:
    env = {
        "RUNG_PRODUCT_KEY_SHA256": "sha256:" + "0" * 64,
        "RUNG_INTERNAL_KEY_SHA256": "sha256:" + "1" * 64,
    }
    config = load_config(K8S / "base/production.yaml", env=env)
    services = objects("Service")
    deployments = objects("Deployment")
    for tier in config.tiers:
        for backend in tier.backends:
            url = urlparse(backend.url)
            service = services[url.hostname]
            assert url.port in [p["port"] for p in service["spec"]["ports"]]
            (container,) = deployments[url.hostname]["spec"]["template"]["spec"]["containers"]
            args = container["args"]
            assert args[args.index("--served-model-name") + 1] == tier.model
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert urlparse(config.limits.redis_url.get_secret_value()).hostname == "redis"
    assert "redis" in services


def test_vllm_args_are_the_compose_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, deployment in objects("Deployment").items():
        if name.startswith("vllm-"):
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["args"] == compose[name]["command"], name


def test_the_gateway_is_probed_scaled_and_protected() -> None:
    rung = objects("Deployment")["rung"]
    (container,) = rung["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:4] == ["rung", "serve", "--config", "/etc/rung/production.yaml"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in rung["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/rung"]]["configMap"]["name"] == "rung-config"
    assert objects("HorizontalPodAutoscaler")["rung"]["spec"]["scaleTargetRef"]["name"] == "rung"
    assert objects("PodDisruptionBudget")["rung"]["spec"]["minAvailable"] >= 1
    keys = {e["name"] for e in container["env"]}
    config_text = (ROOT / "config/production.yaml").read_text()
    for needed in ("RUNG_PRODUCT_KEY_SHA256", "RUNG_INTERNAL_KEY_SHA256", "RUNG_ADMIN_KEY"):
        assert needed in config_text
        assert needed in keys
