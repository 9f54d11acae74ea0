from __future__ import annotations

from pathlib import Path

import pytest

from rung.config import RungConfig, load_config, parse_config
from rung.config.loader import interpolate
from rung.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def minimal(**overrides: object) -> dict[str, object]:
    tier = {
        "name": "small",
        "model": "m-small",
        "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
        "backends": [{"url": "http://127.0.0.1:8001/v1"}],
    }
    return {"tiers": [{**tier, **overrides}]}


def errors_of(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(data, "admin.yaml", env or {})
    assert excinfo.value.path == "admin.yaml"
    return excinfo.value.errors


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    # Only the production keys are required from the environment (every other ${...} defaults).
    env = {
        "RUNG_PRODUCT_KEY_SHA256": "sha256:" + "a" * 64,
        "RUNG_INTERNAL_KEY_SHA256": "sha256:" + "b" * 64,
    }
    config = load_config(path, env=env)
    assert isinstance(config, RungConfig)
    assert config.tiers


def test_defaults_fill_in_and_the_object_is_frozen() -> None:
    config = parse_config(minimal(), "x", {})
    assert config.server.port == 8080
    assert config.tiers[0].backends[0].max_concurrency == 64
    with pytest.raises(ValueError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(modle="x"), "tiers[0].modle: unknown key (check its spelling)"),
        ({**minimal(), "sever": {}}, "sever: unknown key"),
        ({**minimal(), "server": {"port": "eighty"}}, "server.port: Input should be a valid int"),
        ({**minimal(), "server": {"port": 70000}}, "server.port: Input should be less than or"),
        (minimal(backends=[]), "tiers[0]: tier 'small' needs `backends` (URLs) or `local`"),
        (minimal(backends=[{"url": "ftp://x"}]), "tiers[0].backends[0].url: must be an http"),
        (
            minimal(price={"input_per_mtok": -1, "output_per_mtok": 0}),
            "tiers[0].price.input_per_mtok: Input should be greater than or equal to 0 (got -1)",
        ),
        (minimal(name="Big Model"), "tiers[0].name: must be lower-case"),
        (minimal(name="rung"), "reserved"),
        ({"tiers": []}, "tiers: List should have at least 1 item"),
        ({}, "tiers: Field required"),
        ({**minimal(), "routing": {"length_thresholds": [10]}}, "at most 0"),
        (
            {**minimal(), "routing": {"policy": "magic"}},
            "routing.policy: Input should be 'classifier' or 'length'",
        ),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key_and_what_was_expected(data: object, expected: str) -> None:
    assert any(expected in e for e in errors_of(data)), errors_of(data)


def test_duplicate_tier_names_or_model_ids_are_rejected() -> None:
    data = minimal()
    tiers = data["tiers"]
    assert isinstance(tiers, list)
    data["tiers"] = [*tiers, {**tiers[0], "name": "large"}]
    assert any("'m-small' already names tier 'small'" in e for e in errors_of(data))


def test_every_problem_is_reported_at_once() -> None:
    data = minimal(modle="x", price={"input_per_mtok": -1, "output_per_mtok": -1})
    assert len(errors_of(data)) == 3


def test_env_references_are_substituted_and_secrets_hidden() -> None:
    data = minimal(backends=[{"url": "http://${HOST:-127.0.0.1}:${PORT}/v1", "api_key": "${KEY}"}])
    config = parse_config(data, "x", {"PORT": "9000", "KEY": "sk-secret"})
    backend = config.tiers[0].backends[0]
    assert backend.url == "http://127.0.0.1:9000/v1"
    assert backend.api_key is not None
    assert backend.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(config)


def test_a_missing_env_var_names_the_key_path() -> None:
    data = minimal(backends=[{"url": "http://x/v1", "api_key": "${NOT_SET}"}])
    assert errors_of(data) == [
        "tiers[0].backends[0].api_key: environment variable NOT_SET is not set"
    ]


def test_empty_api_key_means_none() -> None:
    data = minimal(backends=[{"url": "http://x/v1", "api_key": "${EMPTY:-}"}])
    assert parse_config(data, "x", {}).tiers[0].backends[0].api_key is None


def test_interpolate_leaves_non_strings_alone() -> None:
    tree, problems = interpolate({"a": [1, 2.5, True, None, "${X}"]}, {"X": "y"})
    assert tree == {"a": [1, 2.5, True, None, "y"]}
    assert problems == []


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [\n")
    with pytest.raises(ConfigError, match=r"line 2, column 1: not valid YAML"):
        load_config(bad)


def test_tier_index_resolves_names_and_model_ids() -> None:
    config = parse_config(minimal(), "x", {})
    assert config.tier_index("small") == 0
    assert config.tier_index("m-small") == 0
    assert config.tier_index("other") is None


def test_local_tiers_need_no_urls_until_rung_up_fills_them() -> None:
    data = minimal(backends=[], local={"weights": "qwen2.5-coder-0.5b"})
    config = parse_config(data, "x", {})
    assert config.tiers[0].local is not None
    assert config.tiers[0].local.n_threads == 1
    assert config.unlaunched_local_tiers() == ["small"]
    assert parse_config(minimal(), "x", {}).unlaunched_local_tiers() == []
