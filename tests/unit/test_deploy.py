"""docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so their structure
is checked instead, against the configs they mount, so that they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from rung.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services(compose: dict[str, Any], profile: str | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    if profile is None:
        return found
    return {k: v for k, v in found.items() if profile in v.get("profiles", [profile])}


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def host_path(compose_service: dict[str, Any], container_path: str) -> Path:
    """Map a path inside the container to the repo file a bind mount puts there."""
    for volume in compose_service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith("./"):
            continue
        if container_path == target:  # a single file mounted
            return ROOT / source
        if container_path.startswith(target + "/"):
            return ROOT / source / container_path.removeprefix(target + "/")
    raise AssertionError(f"{container_path} is not bind-mounted from the repo")


def test_every_service_has_a_healthcheck_and_known_profile(compose):
    for name, service in services(compose).items():
        assert "healthcheck" in service, name
        assert set(service.get("profiles", [])) <= {"gpu", "cpu", "vllm-cpu"}, name
    assert "profiles" not in compose["services"]["redis"]  # every profile gets Redis


def test_gpu_profile_serves_every_production_tier(compose):
    gpu = services(compose, "gpu")
    rung = gpu["rung"]
    config_path = host_path(rung, flag(rung["command"], "--config"))
    keys = {
        "RUNG_PRODUCT_KEY_SHA256": "sha256:" + "a" * 64,
        "RUNG_INTERNAL_KEY_SHA256": "sha256:" + "b" * 64,
    }
    config = load_config(config_path, env=keys)
    assert config_path.name == "production.yaml"
    # Production authenticates every request: tenants with keys, no open tenant.
    assert config.tenants
    assert all(t.keys for t in config.tenants)
    assert config.auth.open_tenant is None
    assert config.limits.store == "redis"
    assert [t.name for t in config.tiers] == ["tiny", "small", "medium", "large"]
    for tier in config.tiers:
        for backend in tier.backends:
            url = urlparse(backend.url)
            assert url.hostname in gpu, f"{tier.name}: no compose service {url.hostname}"
            vllm = gpu[url.hostname]
            assert flag(vllm["command"], "--port") == str(url.port)
            assert flag(vllm["command"], "--served-model-name") == tier.model
            assert url.hostname in rung["depends_on"]
    # Both gateway replicas share one cache: the compose file's Redis.
    assert config.cache.store == "redis"
    redis = urlparse(config.cache.redis_url.get_secret_value())
    assert redis.hostname in gpu
    assert redis.hostname in rung["depends_on"]
    assert redis.port == 6379


def test_vllm_services_reserve_a_gpu_each_and_share_the_hf_cache(compose):
    vllm = {k: v for k, v in services(compose, "gpu").items() if k.startswith("vllm-")}
    assert len(vllm) == 4
    devices = []
    for name, service in vllm.items():
        assert service["image"].startswith("vllm/vllm-openai:"), name
        reservation = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert reservation["capabilities"] == ["gpu"]
        assert reservation["driver"] == "nvidia"
        devices.append(reservation["device_ids"][0])
        assert "hf-cache:/root/.cache/huggingface" in service["volumes"]
        assert "/health" in " ".join(service["healthcheck"]["test"])
    assert len(set(devices)) == 4  # one GPU each by default
    assert "hf-cache" in compose["volumes"]


def test_the_larger_tiers_run_awq_and_the_design_models(compose):
    models = {
        name: flag(s["command"], "--model")
        for name, s in services(compose, "gpu").items()
        if name.startswith("vllm-")
    }
    assert models["vllm-tiny"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert models["vllm-small"] == "microsoft/Phi-3-mini-4k-instruct"
    assert "llama-3-8b-instruct" in models["vllm-medium"].lower()
    assert "mixtral-8x7b-instruct" in models["vllm-large"].lower()
    for name in ("vllm-medium", "vllm-large"):
        command = compose["services"][name]["command"]
        assert flag(command, "--quantization") == "awq"
        assert "awq" in flag(command, "--model").lower()


def test_two_rung_replicas_behind_one_port(compose):
    gpu = services(compose, "gpu")
    assert gpu["rung"]["deploy"]["replicas"] == 2
    assert "ports" not in gpu["rung"]  # replicas cannot share a host port; nginx fronts them
    assert gpu["lb"]["ports"] == ["8080:8080"]
    nginx = host_path(gpu["lb"], "/etc/nginx/nginx.conf")
    text = nginx.read_text()
    assert re.search(r"server rung:8080\b", text)
    assert "proxy_buffering off" in text  # SSE must stream through


def test_cpu_profile_runs_the_local_ladder(compose):
    cpu = services(compose, "cpu")
    assert set(cpu) >= {"rung-cpu", "redis"}
    service = cpu["rung-cpu"]
    assert service["build"]["target"] == "cpu"
    assert service["command"][:2] == ["rung", "up"]
    config = load_config(host_path(service, flag(service["command"], "--config")), env={})
    assert all(t.local is not None for t in config.tiers)
    assert "models:/models" in service["volumes"]


def test_dockerfile_targets_and_copied_paths_exist(compose):
    text = (ROOT / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert targets == ["gateway", "cpu", "vllm-cpu"]
    for service in services(compose).values():
        if "build" in service:
            assert service["build"]["target"] in targets
            assert (ROOT / service["build"]["context"] / "Dockerfile").exists()
    for source in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    # Every target installs the versions CI tested: rung's own pins, the cpu one with
    # llama.cpp's prebuilt server, the vllm-cpu one vLLM's environment at the vLLM tests' pins.
    installs = re.findall(r"pip install (.+?)(?: &&|$)", text, re.MULTILINE)
    assert installs == [
        "-c constraints.txt .",
        '-c constraints.txt ".[local]" \\',
        "-c constraints-vllm.txt \\",
    ]


def test_the_vllm_cpu_profile_serves_the_vllm_ladder(compose):
    service = services(compose, "vllm-cpu")["rung-vllm-cpu"]
    assert service["build"]["target"] == "vllm-cpu"
    config = load_config(host_path(service, flag(service["command"], "--config")), env={})
    assert {t.local.engine for t in config.tiers if t.local is not None} == {"vllm"}
    assert "models:/models" in service["volumes"]


def _exposed_names() -> set[str]:
    """Every sample name rung's /metrics can carry (counters end in _total, histograms in
    _bucket / _sum / _count), read from the registry itself."""
    from rung.router.metrics import Metrics

    state = {
        "tiers": [{"tier": "t", "replicas": [{"replica": "t[0]", "reachable": True,
                                              "in_rotation": True, "outstanding": 0}]}],
        "cache": {"available": True, "errors": 0, "indexed": 0},
        "limits": {"available": True, "errors": 0},
    }  # fmt: skip
    names: set[str] = set()
    for family in Metrics(lambda: state).registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_prometheus_and_grafana_watch_the_gpu_profile(compose):
    gpu = services(compose, "gpu")
    prometheus, grafana = gpu["prometheus"], gpu["grafana"]
    scrape = yaml.safe_load(host_path(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["rung"]
    assert sd["port"] == 8080
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert urlparse(source["url"]).hostname == "prometheus"
    assert urlparse(source["url"]).port == 9090
    (provider,) = yaml.safe_load((provisioning / "dashboards/rung.yml").read_text())["providers"]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert (dashboards / "rung.json").exists()
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]  # not open to the network by default
    assert "location = /metrics { return 404; }" in (ROOT / "deploy/nginx.conf").read_text()


def test_the_grafana_dashboard_queries_only_metrics_rung_exposes():
    import json

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/rung.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    used = {m for e in exprs for m in re.findall(r"\b(rung_[a-z_]+)", e)}
    exposed = _exposed_names()
    assert used <= exposed, sorted(used - exposed)
    assert {"rung_cost_usd_total", "rung_top_tier_cost_usd_total"} <= used  # the savings
