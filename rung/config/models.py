"""The admin config as frozen, typed pydantic models. Unknown keys are errors, never ignored."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from rung.config.base import Frozen, check_redis_url
from rung.config.goal import GoalConfig
from rung.config.tenants import AuthConfig, LimitsConfig, Policy, TenantConfig

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Names clients may send as `model` to get routing instead of a pinned tier.
ROUTED_MODEL_NAMES = ("rung", "auto")

PositiveSeconds = Annotated[float, Field(gt=0)]


_Frozen = Frozen


class ServerSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_timeout_s: PositiveSeconds = 120.0
    """Overall deadline for one request, failover included."""
    body_timeout_s: PositiveSeconds = 10.0
    """Longest time a client may take to send its request body (408 after it: a slow or
    stalled body never holds a connection for long)."""
    keep_alive_timeout_s: PositiveSeconds = 5.0
    """How long an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)."""
    header_timeout_s: PositiveSeconds = 10.0
    """Longest time a client may take to send a request's headers, from connecting (or from a
    kept-alive request's first byte): a connection that sends nothing or trickles is answered
    408 and closed, not held."""
    max_header_bytes: int = Field(default=65_536, ge=1024)
    """Request line plus headers, in bytes; more is answered 431 and the connection closed."""
    access_log: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    """`json`: every log line is a JSON object, plus one line per request (logger
    `rung.request`: request id, tenant, tier, route reason, cache, escalation, status,
    latencies, tokens, cost; never prompt text or keys)."""
    admin_key: SecretStr | None = None
    """Bearer key for the /admin API (use `${ENV}`); without it the admin API is off."""
    metrics: Literal["open", "admin", "off"] = "open"
    """`GET /metrics` (Prometheus): open to any scraper that reaches the port, behind the
    admin key, or off. It carries tenant and tier names and totals, never prompts or keys."""

    @field_validator("admin_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value


class HealthSettings(_Frozen):
    interval_s: PositiveSeconds = 5.0
    """How often every replica is probed (GET {url}/models)."""
    probe_timeout_s: PositiveSeconds = 2.0
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive failed calls that take a replica out of rotation."""
    cooldown_s: PositiveSeconds = 10.0
    """How long a replica stays out before a probe or a trial request may bring it back."""


class BackendConfig(_Frozen):
    url: str
    """Base URL of an OpenAI-compatible server, including the version prefix (…/v1); for a
    `litellm` backend, the provider's API base (e.g. https://api.anthropic.com)."""
    type: Literal["openai", "litellm"] = "openai"
    """`openai`: an OpenAI-compatible server (vLLM, llama.cpp, ...), called directly;
    `litellm`: any provider litellm speaks to (the `litellm` extra), named by `litellm_model`."""
    litellm_model: str | None = None
    """litellm's model string for a `litellm` backend, e.g. `anthropic/claude-3-5-haiku-latest`."""
    api_key: SecretStr | None = None
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    connect_timeout_s: PositiveSeconds = 2.0
    read_timeout_s: PositiveSeconds = 60.0
    """Longest silence allowed while waiting for the first byte or between streamed chunks."""

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _litellm_needs_a_model(self) -> BackendConfig:
        if self.type == "litellm" and not self.litellm_model:
            raise ValueError("a `type: litellm` backend needs `litellm_model`")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8001/v1")
        return value.rstrip("/")


class Price(_Frozen):
    input_per_mtok: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0)
    """USD per million completion tokens."""


class LocalTier(_Frozen):
    """A tier that `rung up` serves itself on this machine (docs/local-ladder.md)."""

    engine: Literal["llama.cpp", "vllm"] = "llama.cpp"
    """`llama.cpp`: llama.cpp's own server (prebuilt, in rung's environment); `vllm`: vLLM's
    OpenAI server, from its own environment (`make vllm`)."""
    weights: str
    """A packaged model's name (`rung models list`) or a path to a .gguf file; for vLLM also a
    Hugging Face model directory (a GGUF is converted for it once)."""
    python: str | None = None
    """vLLM: the Python that has it (default: $RUNG_VLLM_PYTHON, else the environment
    `make vllm` built)."""
    args: list[str] = Field(default_factory=list)
    """vLLM: more server flags, e.g. `[--enable-auto-tool-choice, --tool-call-parser, hermes]`."""
    replicas: int = Field(default=1, ge=1, le=16)
    n_threads: int = Field(default=1, ge=1, le=256)
    """CPU threads per server; 1 is steadiest when several servers share few cores."""
    n_ctx: int = Field(default=2048, ge=256)
    """Tokens (prompt + answer) one request may use."""
    parallel: int | None = Field(default=None, ge=1, le=256)
    """Requests one server decodes together: llama.cpp's slots (each with `n_ctx` tokens;
    default 1), vLLM's batch (default 64: it batches continuously, so rung should not queue
    what it would batch)."""

    @property
    def slots(self) -> int:
        if self.parallel is not None:
            return self.parallel
        return 64 if self.engine == "vllm" else 1

    read_timeout_s: PositiveSeconds = 300.0
    """CPU prompt processing can take a while before the first token."""


class AdapterConfig(_Frozen):
    """A LoRA adapter the tier's backends serve beside the base model (vLLM `--enable-lora
    --lora-modules <model>=<path>`)."""

    model: str
    """The name the backends serve the adapter under; sent as `model`."""
    price: Price | None = None
    """Per-adapter price; default: the tier's."""
    path: str | None = None
    """A `local` vLLM tier: the adapter's directory (PEFT format), which `rung up` serves as
    `model` (`--enable-lora --lora-modules model=path`)."""


class TierConfig(_Frozen):
    name: str
    model: str
    """The model id the tier's backends serve; sent to them as `model`."""
    price: Price
    backends: list[BackendConfig] = Field(default_factory=list)
    local: LocalTier | None = None
    logprobs: bool = True
    """The backends can return token logprobs (vLLM, llama.cpp can). Without them escalation
    judges answers by their other signals only."""
    context_window: int | None = Field(default=None, ge=256)
    """Tokens (prompt + answer) the model takes; None: not checked. A request whose estimated
    prompt plus max_tokens exceeds it never goes here."""
    tools: bool = True
    """The model makes tool calls (`tools` / `functions` requests)."""
    json_schema: bool = True
    """The backends enforce `response_format` (json_object / json_schema)."""
    vision: bool = False
    """The model reads `image_url` content parts."""
    n: Literal["native", "fan_out", "one"] | None = None
    """How a request for `n` > 1 choices is served: `native` (the backends honour `n`, as vLLM
    does), `fan_out` (rung asks `n` times and joins the answers: servers that refuse or ignore
    `n`, such as llama.cpp's), `one` (refused with a 400 naming the tier). Default: `fan_out`
    for a `local` llama.cpp tier, else `native`. Either way the request is priced and budgeted
    as `n` answers."""
    adapters: dict[str, AdapterConfig] = Field(default_factory=dict)
    """LoRA adapters by name; a tenant's `policy.adapters` picks one per tier."""

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
        if value in ROUTED_MODEL_NAMES:
            raise ValueError(f"{value!r} is reserved for routed requests")
        return value

    @property
    def choices(self) -> Literal["native", "fan_out", "one"]:
        """How this tier serves `n` > 1 (see `n`)."""
        if self.n is not None:
            return self.n
        llama = self.local is not None and self.local.engine == "llama.cpp"
        return "fan_out" if llama else "native"

    @model_validator(mode="after")
    def _has_backends(self) -> TierConfig:
        if not self.backends and self.local is None:
            raise ValueError(f"tier {self.name!r} needs `backends` (URLs) or `local` (rung up)")
        return self


class RoutingConfig(_Frozen):
    policy: Literal["classifier", "length"] = "classifier"
    """`classifier`: P(tier answers well) from the prompt's embedding, then the tier with the
    best expected value for `goal`; `length`: a rule on prompt length. See docs/routing.md."""
    classifier: str = "production"
    """A shipped classifier's name (`production`) or a classifier directory (`rung train`).
    Its tiers are matched to the config's by name; unmatched config tiers are never routed to
    (only pinned or used as fallback)."""
    embedder: str = "static-minilm-l6"
    """Must be the embedder the classifier was trained with (checked at startup):
    `static-minilm-l6` (default, distilled once from MiniLM), `minilm-l6-q8` or `minilm-l6-int8`."""
    goal: GoalConfig | None = None
    """Default: keep 95% of the top tier's quality. See GoalConfig."""
    quality_target: float | None = Field(default=None, ge=0, le=1)
    """Legacy rule instead of `goal`: the cheapest tier whose predicted P(success) reaches this
    probability. It says nothing about the quality kept or the cost; prefer `goal`."""
    embed_batch_max: int = Field(default=32, ge=1, le=1024)
    embed_batch_wait_ms: float = Field(default=0.0, ge=0, le=100)
    embed_threads: int = Field(default=1, ge=1, le=64)
    """onnxruntime threads per embedding call. 1: the int8 MiniLM embeds a short question in
    1.67 ms on one thread and 1.86 ms on two (2 cores); a second thread paid off only for the
    fp32 arithmetic of `minilm-l6-int8` on long prompts (bench/classifier.py)."""
    length_thresholds: list[int] = Field(default_factory=lambda: [2000])
    """`length` policy: tier i serves prompts of at most thresholds[i] characters."""
    conversation: Literal["sticky_up", "free"] = "sticky_up"
    """`sticky_up`: once a conversation was served by a tier, its later turns are served by
    that tier or a higher one (no bouncing down mid-conversation). `free`: each turn alone."""
    conversation_ttl_s: float = Field(default=3600.0, gt=0)
    """How long a conversation's tier is remembered after its last turn."""
    conversation_max: int = Field(default=100_000, ge=1)
    """Conversations remembered in memory (least recently used go first); with
    `limits.store: redis` they live in Redis, shared by every replica, for the TTL."""
    load_aware: bool = True
    """When the chosen tier is busy (75% of its capacity in flight), prefer an allowed tier that
    is at least as likely to succeed, within 0.02 of its utility, with more spare capacity."""
    min_tier_for_tools: str | None = None
    """The lowest tier a tool-call request may go to (by name)."""
    min_tier_for_json: str | None = None
    """The lowest tier a `response_format` (JSON) request may go to (by name)."""

    @model_validator(mode="after")
    def _one_rule(self) -> RoutingConfig:
        if self.goal is not None and self.quality_target is not None:
            raise ValueError("set `goal` or the legacy `quality_target`, not both")
        return self

    @field_validator("length_thresholds")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(value)) or any(v < 0 for v in value):
            raise ValueError("must be non-negative and strictly increasing")
        return value


class CacheConfig(_Frozen):
    """The semantic cache (docs/cache.md)."""

    enabled: bool = True
    store: Literal["memory", "redis"] = "memory"
    """`memory`: in this process (the default); `redis`: shared by every gateway replica."""
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """May carry a password: `redis://:${REDIS_PASSWORD}@host:6379/0`."""
    redis_timeout_ms: float = Field(default=50.0, gt=0, le=10_000)
    """Longest wait for Redis on a request; past it the cache is bypassed for that request."""
    semantic: bool = True
    """Also match rephrased questions by embedding (exact matches only when false)."""
    embedder: str | None = "minilm-l6-q8"
    """What rephrasings are matched with (None: routing.embedder). MiniLM re-quantized for int8
    arithmetic by default (rung.classifiers.quantized: 1.6 ms a question instead of 3.9): the
    shipped hit verifier is fitted on its cosines; with the static table (a bag of words) the
    same budget served about half as many paraphrases (bench/cache_quality.py)."""
    similarity_threshold: float = Field(default=0.75, gt=0, le=1)
    """The similarity floor: candidates below this cosine are never considered; above it the
    near-miss guard and the hit verifier decide."""
    verifier: str | None = "default"
    """The learned hit verifier (`default`: shipped; or a directory from `rung cache fit`);
    null: serve every candidate above the floor that the guard passes (not recommended)."""
    max_wrong_hit_rate: float = Field(default=0.01, gt=0, lt=1)
    """The error budget: the verifier's threshold is set so that, on its calibration pairs,
    at most this share of wrong candidates would be served (95% upper confidence bound). If no
    threshold can promise it, semantic hits are off (exact repeats only)."""
    ttl_s: PositiveSeconds = 86_400.0
    max_entries_per_tenant: int = Field(default=10_000, ge=1)
    max_bytes_per_tenant: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Memory store bound (Redis: bound Redis itself with maxmemory)."""
    max_temperature: float = Field(default=1.0, ge=0)
    """Answers to requests sampled hotter than this are not stored. A request without
    `temperature` counts as 1.0 (the OpenAI default); set 0 to store only greedy answers."""
    ann_min: int = Field(default=4096, ge=1)
    """From this many entries in one scope, search an HNSW graph instead of every vector."""

    _redis_url = field_validator("redis_url")(check_redis_url)


class EscalationConfig(_Frozen):
    """Answer again with the next tier when an answer's confidence is low (docs/escalation.md)."""

    enabled: bool = False
    threshold: float = Field(default=0.5, ge=0, le=1)
    """Escalate when P(the answer is correct) is below this (a tenant's policy may override)."""
    max_steps: int = Field(default=1, ge=1, le=8)
    """Escalations per request at most."""
    calibrator: str = "local"
    """A shipped calibrator (`local`) or a file from `rung calibrate`."""
    streams: Literal["probe", "hold", "off"] = "probe"
    """Streams with judging: `probe` holds back the first tokens, judges them with the
    calibrator and streams on or switches tiers (a classifier with an answer verifier cannot
    judge a prefix: there it means `off`); `hold` answers whole, judges the answer like a
    non-streamed one, then streams it out (time to first token = the whole answer's time);
    `off` streams the start tier's answer unjudged. `true` / `false` read as probe / off."""

    @field_validator("streams", mode="before")
    @classmethod
    def _bool_streams(cls, value: object) -> object:
        if value is True:
            return "probe"
        if value is False:
            return "off"
        return value

    probe_tokens: int | None = Field(default=None, ge=1, le=64)
    """Tokens a stream probe holds back (default: what the calibrator was fitted on)."""


class TracingConfig(_Frozen):
    """OpenTelemetry traces (the `otel` extra): a span per completion request, child spans per
    stage, W3C trace context propagated to the backends."""

    exporter: Literal["none", "console", "otlp"] = "none"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """OTLP over HTTP (protobuf), e.g. an OpenTelemetry collector or Jaeger."""
    service_name: str = "rung"
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Share of new traces sampled; a request that arrives with a sampled `traceparent` is
    always traced (parent-based)."""


class ShadowConfig(_Frozen):
    """Shadow checks (docs/shadow.md): a sampled share of routed answers the reference tier did
    not give are also asked of it, off the client's path, and judged for agreement."""

    rate: float = Field(default=0.0, ge=0, le=1)
    """Share of eligible answers checked; 0: off."""
    tier: str | None = None
    """The reference tier (default: the top tier)."""
    max_concurrency: int = Field(default=2, ge=1, le=256)
    """Checks in flight at once; an answer that finds no free slot is not checked."""
    max_calls_per_day: int = Field(default=10_000, ge=0)
    """Reference calls per UTC day at most (they are charged to no tenant)."""
    record: str | None = None
    """Append each check as an outcome line (`rung label`'s format) to this JSONL file."""
    record_text: bool = False
    """Include the prompt and both answers in those lines (off: scores only). Training a
    classifier on the records (`rung learn`) needs the prompts; recalibrating does not."""
    explore_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of the reference tier's own routed answers also asked of the smallest tier and
    recorded (only with `record`): without it the records only see prompts routing sent low,
    never the ones it could have sent lower."""
    record_escalations: bool = True
    """With `record`: each escalation's first answer (its confidence signals, and whether it
    agreed with the answer served) is a line too, for recalibrating (`rung calibrate`)."""
    guard: bool = True
    """When the checks show, beyond their 95% interval, that a tenant's routing keeps less than
    its `goal.keep`, hold back the tier that agrees least with the reference (docs/shadow.md)."""
    guard_min_checks: int = Field(default=20, ge=1)
    """Checks of a tier before the guard may hold it back."""
    guard_hold_s: float = Field(default=3600.0, gt=0)
    """How long a hold lasts; then the tier serves again and its evidence starts afresh."""


class RungConfig(_Frozen):
    server: ServerSettings = ServerSettings()
    health: HealthSettings = HealthSettings()
    routing: RoutingConfig = RoutingConfig()
    cache: CacheConfig = CacheConfig()
    escalation: EscalationConfig = EscalationConfig()
    tracing: TracingConfig = TracingConfig()
    shadow: ShadowConfig = ShadowConfig()
    tiers: list[TierConfig] = Field(min_length=1)
    """Ordered smallest (cheapest) first."""
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    defaults: Policy = Policy()
    """Every tenant's policy unless it sets its own (docs/tenants.md)."""
    tenants: list[TenantConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> RungConfig:
        seen: dict[str, str] = {}
        for tier in self.tiers:
            for alias in {tier.name, tier.model}:
                if alias in ROUTED_MODEL_NAMES:
                    raise ValueError(f"tier {tier.name!r}: model id {alias!r} is reserved")
                if alias in seen:
                    raise ValueError(
                        f"tier {tier.name!r}: {alias!r} already names tier {seen[alias]!r}; "
                        "tier names and model ids must be unique"
                    )
                seen[alias] = tier.name
        self._check_tenants()
        if self.shadow.tier is not None and self.shadow.tier not in {t.name for t in self.tiers}:
            raise ValueError(f"shadow.tier: no tier named {self.shadow.tier!r}")
        for key in ("min_tier_for_tools", "min_tier_for_json"):
            name = getattr(self.routing, key)
            if name is not None and name not in {t.name for t in self.tiers}:
                raise ValueError(f"routing.{key}: no tier named {name!r}")
        explicit = "length_thresholds" in self.routing.model_fields_set
        if explicit and len(self.routing.length_thresholds) > len(self.tiers) - 1:
            raise ValueError(
                f"routing.length_thresholds has {len(self.routing.length_thresholds)} entries; "
                f"at most {len(self.tiers) - 1} (one fewer than the tiers) make sense"
            )
        return self

    def _check_tenants(self) -> None:
        tiers = {t.name for t in self.tiers}
        names: set[str] = set()
        keys: set[str] = set()
        for where, policy in [("defaults", self.defaults)] + [
            (f"tenant {t.name!r}", t.policy) for t in self.tenants
        ]:
            for name in [policy.max_tier or "", *(policy.allowed_tiers or [])]:
                if name and name not in tiers:
                    raise ValueError(f"{where}: no tier named {name!r} (tiers: {sorted(tiers)})")
            adapters = {t.name: t.adapters for t in self.tiers}
            for tier, adapter in (policy.adapters or {}).items():
                if tier not in tiers:
                    raise ValueError(f"{where}: adapters: no tier named {tier!r}")
                if adapter not in adapters[tier]:
                    raise ValueError(
                        f"{where}: tier {tier!r} has no adapter {adapter!r} "
                        f"(it has: {sorted(adapters[tier]) or 'none'})"
                    )
        for tenant in self.tenants:
            if tenant.name in names:
                raise ValueError(f"tenant {tenant.name!r} is declared twice")
            names.add(tenant.name)
            for key in tenant.keys:
                if key.get_secret_value() in keys:
                    raise ValueError(f"tenant {tenant.name!r}: a key is used by two tenants")
                keys.add(key.get_secret_value())
        open_tenant = self.auth.open_tenant
        if open_tenant is not None and open_tenant not in names:
            raise ValueError(f"auth.open_tenant: no tenant named {open_tenant!r} in `tenants`")

    def unlaunched_local_tiers(self) -> list[str]:
        """Local tiers with no backend URL yet: only `rung up` can serve them."""
        return [t.name for t in self.tiers if t.local is not None and not t.backends]

    def tier_index(self, model: str) -> int | None:
        """The tier a client's `model` pins (by tier name or model id), or None."""
        for index, tier in enumerate(self.tiers):
            if model in (tier.name, tier.model):
                return index
        return None
