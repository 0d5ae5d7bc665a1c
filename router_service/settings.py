"""The router's one settings object, on :class:`llmcore.settings.YamlFileSettings`.

Sources, in increasing precedence: an optional YAML file (``LLM_ROUTER_CONFIG_FILE`` or
``--config``), the environment (``LLM_ROUTER_*``), constructor arguments (the command-line flags).
Built in ``main`` and passed down."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

import grpc
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from llmcore.settings import EngineUrlSettings
from llmcore.vocabulary import ProviderName, TaskName
from router_service.catalog import (
    DEFAULT_ENGINE_NAMES,
    DEFAULT_FALLBACKS,
    DEFAULT_TASK_MODELS,
    Catalog,
)
from router_service.lifecycle.timeouts import StreamTimeouts
from router_service.limits import MAX_STOP_SEQUENCES, max_receive_bytes


class RouterSettings(EngineUrlSettings):
    """Everything the router process needs; see README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="LLM_ROUTER_", extra="forbid")

    # Listening.
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    grace_period_s: float = Field(default=10.0, ge=0)

    # Engines: ollama_base_url(s) and vllm_base_url(s) come from EngineUrlSettings (llmcore).
    # Engine pools (docs/pools.md): a DNS URL (http://NAME:PORT, a Kubernetes headless service)
    # adds the addresses NAME resolves to, re-resolved every dns_refresh_s.
    ollama_dns_url: str = ""
    vllm_dns_url: str = ""
    dns_refresh_s: float = Field(default=10.0, gt=0)
    # Consistent hashing with bounded loads: no replica above this many times the mean load.
    pool_load_factor: float = Field(default=1.25, ge=1.0)
    # affinity (episode/prefix affinity with bounded load, then least loaded); least_loaded and
    # round_robin ignore the prefix caches (baselines, docs/pools.md).
    pool_placement: Literal["affinity", "least_loaded", "round_robin"] = "affinity"
    # How often each replica's own load signals (vLLM /metrics, Ollama /api/ps) are read.
    replica_scrape_interval_s: float = Field(default=1.0, gt=0)
    vllm_api_key: str = Field(
        default="", validation_alias=AliasChoices("vllm_api_key", "VLLM_API_KEY")
    )
    # Seed 2.1: OLLAMA_KEEP_ALIVE=30m keeps models loaded.
    ollama_keep_alive: str = "30m"
    max_connections_per_backend: int = Field(default=256, ge=1)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # Longest silence tolerated between two chunks of a stream (a stalled engine).
    read_timeout_s: float = Field(default=60.0, gt=0)
    # Bound on a whole call when the client sets no deadline.
    default_deadline_s: float = Field(default=300.0, gt=0)

    # Stream timeouts per engine (docs/failures.md), each overridable per task by the pushed
    # flags (flags.stream_timeouts). First token: Ollama's can take 25 s under queueing (it
    # serves requests in turn), vLLM's (continuous batching) should not. Idle: the longest wait
    # for the next token once tokens flow. Both shorter than typical client deadlines.
    ollama_first_token_timeout_s: float = Field(default=30.0, gt=0)
    vllm_first_token_timeout_s: float = Field(default=10.0, gt=0)
    ollama_idle_timeout_s: float = Field(default=15.0, gt=0)
    vllm_idle_timeout_s: float = Field(default=15.0, gt=0)
    # An engine that sent no token for this long when the client's deadline expired was silent:
    # the expiry counts as that engine's timeout (else as the client's budget running out).
    deadline_silent_after_s: float = Field(default=2.0, gt=0)
    # Continuation failover: a plain-text stream whose engine fails after its first token goes
    # on from the text already sent on the fallback engine. flags.continuation_disabled turns
    # it off fleet-wide; this turns it off for this router.
    continuation_enabled: bool = True

    # Control service (empty: standalone, static placement below).
    control_address: str = ""
    control_token: str = ""
    # TLS to the control service: the CA that signed its certificate turns TLS on; a client
    # certificate and key add mTLS (router identity).
    control_tls_ca_file: Path | None = None
    control_tls_cert_file: Path | None = None
    control_tls_key_file: Path | None = None
    router_id: str = ""
    # Where the last good snapshot is kept; default .run/router-<router_id>.snapshot.
    config_cache_path: Path | None = None
    config_stale_grace_s: float = Field(default=30.0, gt=0)
    stats_report_interval_s: float = Field(default=10.0, gt=0)
    engine_probe_interval_s: float = Field(default=5.0, gt=0)

    # Bootstrap placement: used until the control service pushes config (and when it never does).
    primary_provider: ProviderName = "ollama"
    fallback_provider: ProviderName | None = "vllm"
    task_providers: dict[TaskName, ProviderName] = Field(default_factory=dict)

    # Models.
    task_models: dict[TaskName, str] = Field(default_factory=lambda: dict(DEFAULT_TASK_MODELS))
    model_fallbacks: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FALLBACKS.items()}
    )
    engine_model_names: dict[str, dict[ProviderName, str]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_ENGINE_NAMES.items()}
    )

    # Retries (seed 1.4: 3 attempts with exponential backoff), before the first token only.
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_base_delay_s: float = Field(default=0.1, ge=0)
    retry_max_delay_s: float = Field(default=2.0, ge=0)

    # Circuit breaker per engine.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=10.0, gt=0)
    breaker_half_open_probes: int = Field(default=1, ge=1)

    # Shadow mirroring (SHADOW phase, or SPLIT with shadow_during_split): its own bounds, off
    # the request path. Beyond concurrency + queue a mirror is dropped and counted.
    shadow_max_concurrency: int = Field(default=8, ge=1)
    shadow_queue_size: int = Field(default=64, ge=0)
    # Each shadow's own deadline, from its start; one attempt, no retry, no fallback.
    shadow_timeout_s: float = Field(default=60.0, gt=0)
    # Compared pairs (and as many dropped-mirror entries) per stats report; the rest are counted.
    shadow_report_max_pairs: int = Field(default=500, ge=0)
    # Captured texts (flags.shadow_capture_content) are cut to this many characters each.
    shadow_capture_max_chars: int = Field(default=2000, ge=0)
    # The shadow starts this long after the primary's first delta (never inside its TTFT).
    shadow_start_delay_s: float = Field(default=0.002, ge=0, le=1)

    # Input limits.
    max_prompt_chars: int = Field(default=200_000, ge=1)
    max_embed_inputs: int = Field(default=256, ge=1)
    max_output_tokens: int = Field(default=32_768, ge=1)
    # Admission control: streams beyond this get RESOURCE_EXHAUSTED.
    max_concurrent_requests: int = Field(default=1024, ge=1)

    # gRPC send size, for large embedding batches. What the router receives is bounded by the
    # prompt limits instead (max_receive_message_bytes, router_service.limits).
    max_message_bytes: int = Field(default=32 * 1024 * 1024, ge=4 * 1024 * 1024)

    # Security (docs/security.md). API keys for memOS: client name -> key (JSON in the
    # environment) and/or a YAML file of the same; none: the port is open to whoever reaches
    # it. Standard gRPC reflection is off unless enabled.
    api_keys: dict[str, str] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    reflection: bool = False

    # Observability (docs/observability.md). Tracing exports over OTLP gRPC to this endpoint,
    # else to OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT; neither set (or OTEL_SDK_DISABLED=true): off.
    otlp_endpoint: str = ""
    # Prometheus /metrics on host:metrics_port (0 picks a free port; None or negative: off).
    metrics_port: int | None = Field(default=None, le=65535)
    # Prompt and completion text on spans (gen_ai.input/output.messages): opt-in only.
    trace_content: bool = False

    @field_validator("ollama_dns_url", "vllm_dns_url")
    @classmethod
    def _dns_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be http(s)://NAME:PORT")
        return v

    def replica_urls(self, engine: ProviderName) -> list[str]:
        """The static replicas of ``engine``: the list if set, else the single URL unless a
        DNS source replaces it."""
        dns = self.ollama_dns_url if engine == "ollama" else self.vllm_dns_url
        if dns and not self.listed_replicas(engine):
            return []
        return self.engine_replicas(engine)

    @model_validator(mode="after")
    def _consistent(self) -> RouterSettings:
        for task, model in self.task_models.items():
            if model not in self.engine_model_names:
                raise ValueError(f"task_models.{task}: unknown model {model!r}")
        for model, chain in self.model_fallbacks.items():
            for m in [model, *chain]:
                if m not in self.engine_model_names:
                    raise ValueError(f"model_fallbacks.{model}: unknown model {m!r}")
        missing = set(DEFAULT_TASK_MODELS) - set(self.task_models)
        if missing:
            raise ValueError(f"task_models: missing tasks {sorted(missing)}")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> RouterSettings:
        if (self.control_tls_cert_file is None) != (self.control_tls_key_file is None):
            raise ValueError("control_tls_cert_file and control_tls_key_file go together")
        if self.control_tls_cert_file is not None and self.control_tls_ca_file is None:
            raise ValueError("control_tls_cert_file needs control_tls_ca_file (TLS)")
        return self

    @property
    def max_receive_message_bytes(self) -> int:
        """The largest request a valid call can be (derived from the prompt limits)."""
        return max_receive_bytes(self.max_prompt_chars, MAX_STOP_SEQUENCES)

    def control_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for the control session, or None for plaintext."""
        if self.control_tls_ca_file is None:
            return None
        cert = self.control_tls_cert_file.read_bytes() if self.control_tls_cert_file else None
        key = self.control_tls_key_file.read_bytes() if self.control_tls_key_file else None
        return grpc.ssl_channel_credentials(
            root_certificates=self.control_tls_ca_file.read_bytes(),
            private_key=key,
            certificate_chain=cert,
        )

    def resolved_router_id(self) -> str:
        return self.router_id or f"{socket.gethostname()}-{self.port}"

    def resolved_cache_path(self) -> Path:
        return (
            self.config_cache_path or Path(".run") / f"router-{self.resolved_router_id()}.snapshot"
        )

    def stream_timeouts(self) -> dict[ProviderName, StreamTimeouts]:
        """The per-engine stream timeouts before any per-task override."""
        return {
            "ollama": StreamTimeouts(self.ollama_first_token_timeout_s, self.ollama_idle_timeout_s),
            "vllm": StreamTimeouts(self.vllm_first_token_timeout_s, self.vllm_idle_timeout_s),
        }

    def catalog(self) -> Catalog:
        return Catalog(
            engine_names=self.engine_model_names,
            task_models=self.task_models,
            fallbacks=self.model_fallbacks,
        )
