"""The control service's one settings object, on :class:`llmcore.settings.YamlFileSettings`.

Sources, in increasing precedence: an optional YAML file (``LLM_CONTROL_CONFIG_FILE`` or
``--config``), the environment (``LLM_CONTROL_*``), constructor arguments (the command-line flags).
Built in ``main`` and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from control_service.authz import Credentials, build_credentials
from control_service.state import SEED_SPLIT_STEPS
from control_service.store._upkeep import DAY, Retention
from control_service.store.etcd_url import parse_endpoints
from llmcore.settings import EngineUrlSettings
from llmcore.vocabulary import ProviderName


class ControlSettings(EngineUrlSettings):
    """Everything the control service process needs."""

    model_config = SettingsConfigDict(env_prefix="LLM_CONTROL_", extra="forbid")

    # Listening.
    host: str = "127.0.0.1"
    port: int = Field(default=50061, ge=0, le=65535)
    grace_period_s: float = Field(default=5.0, ge=0)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)

    # Durable state.
    db_path: Path = Path("./.run/control.db")
    # The store: "" or "sqlite" (db_path, one process), or "etcd://host:port,host:port,..."
    # (several replicas, one leader; docs/ha.md). LLM_CONTROL_STORE or --store.
    store: str = ""
    etcd_prefix: str = "/llmgateway"
    # The leader's lease: a dead leader is replaced within this (plus a round trip). etcd's
    # smallest lease is 2 s with its default election timeout.
    leader_lease_ttl_s: int = Field(default=10, ge=2, le=300)
    # How clients reach this replica (host:port), published when it leads; default host:port
    # (the hostname when listening on all interfaces). replica_id defaults to that address.
    advertise_address: str = ""
    replica_id: str = ""
    # The SQLite store's size cap (None: the disk's), and its retention: snapshots beyond the
    # newest store_keep_versions drop their state; decision events (dry-run verdicts, alerts,
    # router expiries) go after store_decision_retention_days, the audit trail of changes after
    # store_audit_retention_days (0: never). One control service per file (a lock on open).
    store_max_mb: float | None = Field(default=None, gt=0)
    store_keep_versions: int = Field(default=1000, ge=1)
    store_decision_retention_days: float = Field(default=30.0, gt=0)
    store_audit_retention_days: float = Field(default=365.0, ge=0)
    # Used only when the store is empty (the first start): the SPLIT weights promote walks.
    split_steps: list[int] = Field(default_factory=lambda: list(SEED_SPLIT_STEPS))

    # Security (docs/security.md). Every ControlService call needs a credential: the operator
    # token (auth_token), the reader token, the fleet router token (any router id), the named
    # tokens of credentials_file (YAML: operators / readers / routers, a router's name binds its
    # id), or an mTLS client certificate. With none configured the service refuses to start,
    # unless insecure is set: then calls without a credential run unauthenticated (dev only).
    auth_token: str = ""
    reader_token: str = ""
    router_token: str = ""
    credentials_file: Path | None = None
    insecure: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Set: clients must present a certificate signed by this CA (mTLS). A certificate's common
    # name (or a DNS name) is its identity: listed here, an operator or a reader; otherwise the
    # router of that id.
    tls_client_ca_file: Path | None = None
    tls_operator_names: list[str] = Field(default_factory=list)
    tls_reader_names: list[str] = Field(default_factory=list)
    # Standard gRPC reflection (lists the services; grpcurl without protos). Off unless enabled.
    reflection: bool = False

    # The router hub (llmctl routers, GetHealth): a disconnected router's record is dropped
    # this long after it went away (the audit log keeps an event of it); at most this many
    # records; a second session for a router id that is live (seen within session_takeover_s)
    # is refused, not swapped in, so two routers sharing an id cannot flap for ever.
    router_expiry_s: float = Field(default=600.0, gt=0)
    max_routers: int = Field(default=1000, ge=1)
    session_takeover_s: float = Field(default=30.0, ge=0)
    # Stats reports: a count above this in one report is refused (and so is the session).
    max_report_count: int = Field(default=10_000_000, ge=1)

    # Engines, probed for GetHealth: ollama_base_url(s) and vllm_base_url(s) (EngineUrlSettings);
    # every replica of a pool is probed (docs/pools.md).
    probe_timeout_s: float = Field(default=0.3, gt=0)
    probe_cache_s: float = Field(default=2.0, ge=0)
    store_health_timeout_s: float = Field(default=0.3, gt=0)

    # Stats windows (for the rollback rules).
    stats_retention_s: float = Field(default=900.0, gt=0)
    stats_slot_s: float = Field(default=5.0, gt=0)
    # Shadow comparisons (GetShadowReport): kept this long, at most this many pairs.
    shadow_retention_s: float = Field(default=900.0, gt=0)
    shadow_max_pairs: int = Field(default=10_000, ge=1)

    # Automatic rollback (the thresholds are flags: flags.rollback). The control loop evaluates
    # the rules this often, and probes the engines' health at the same pace.
    rollback_enabled: bool = True
    evaluation_interval_s: float = Field(default=1.0, gt=0)

    # Go/no-go gate (seed 7.3). Golden queries: a YAML file (see control_service.rollback.golden)
    # run through a router, pinned to vLLM, at this address.
    golden_queries_file: Path | None = None
    golden_router_address: str = ""
    golden_timeout_s: float = Field(default=60.0, gt=0)
    golden_concurrency: int = Field(default=4, ge=1, le=64)
    # Latency and shadow error rate are read over this window (at most stats_retention_s).
    gonogo_window_s: float = Field(default=900.0, gt=0)
    gonogo_min_requests: int = Field(default=50, ge=1)
    gonogo_latency_go_ms: float = Field(default=5000.0, gt=0)
    gonogo_latency_no_go_ms: float = Field(default=10000.0, gt=0)
    gonogo_shadow_error_go: float = Field(default=0.01, ge=0, le=1)
    gonogo_shadow_error_no_go: float = Field(default=0.05, ge=0, le=1)
    # "VRAM usage stable over 24 hours": the observation the VRAM criterion asks for.
    gonogo_vram_window_s: float = Field(default=86400.0, gt=0)
    # Meaning criteria (docs/shadow.md): semantic similarity p10 and the judge's loss rate, over
    # at least this many scored (judged) pairs of the window.
    gonogo_semantic_go: float = Field(default=0.80, ge=-1, le=1)
    gonogo_semantic_no_go: float = Field(default=0.60, ge=-1, le=1)
    gonogo_judge_loss_go: float = Field(default=0.35, ge=0, le=1)
    gonogo_judge_loss_no_go: float = Field(default=0.50, ge=0, le=1)
    gonogo_min_meaning_pairs: int = Field(default=20, ge=1)
    # Embedding parity (llmctl embeddings parity): the default corpus (one text per line), and
    # what passes: per-text cosine p10 and the nearest-neighbour overlap@k.
    parity_corpus_file: Path | None = None
    parity_min_cosine_p10: float = Field(default=0.95, ge=-1, le=1)
    parity_min_overlap: float = Field(default=0.80, ge=0, le=1)
    parity_timeout_s: float = Field(default=30.0, gt=0)

    # GPU telemetry and VRAM-aware model selection (docs/gpu.md). gpu_backend: "nvml" reads the
    # GPUs through nvidia-ml-py, "fake" is a demo TITAN RTX (for the simulators), "off" reports
    # telemetry as switched off.
    gpu_backend: Literal["nvml", "fake", "off"] = "nvml"
    gpu_poll_interval_s: float = Field(default=2.0, gt=0)
    # After "no GPU" or a lost GPU, NVML is initialised again at most this often.
    gpu_retry_interval_s: float = Field(default=30.0, ge=0)
    # Recent readings kept per device (1800 x 2 s = one hour).
    gpu_history_size: int = Field(default=1800, ge=2)
    # Kept free when selecting or checking a model: KV cache, CUDA context, other processes.
    gpu_headroom_gb: float = Field(default=1.5, ge=0)
    # OOM heuristic: free memory at or below this is "full"; a compute process vanishing at or
    # above this share of memory in use is a crash.
    gpu_oom_free_epsilon_mb: float = Field(default=256.0, ge=0)
    gpu_oom_near_full_ratio: float = Field(default=0.95, gt=0, le=1)
    # VRAM stability (go/no-go, seed 7.3 "stable over 24 hours"): window and thresholds.
    gpu_stability_window_s: float = Field(default=86_400.0, gt=0)
    gpu_stability_max_drift_gb: float = Field(default=1.0, ge=0)
    gpu_stability_max_slope_gb_per_h: float = Field(default=0.25, ge=0)
    gpu_stability_min_coverage: float = Field(default=0.9, ge=0, le=1)
    gpu_stability_min_samples: int = Field(default=10, ge=2)

    # Observability (docs/observability.md). Tracing exports over OTLP gRPC to this endpoint,
    # else to OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT; neither set (or OTEL_SDK_DISABLED=true): off.
    otlp_endpoint: str = ""
    # Prometheus /metrics on host:metrics_port (0 picks a free port; None or negative: off).
    metrics_port: int | None = Field(default=None, le=65535)
    # vLLM's own /metrics is read this often (cache hit rate, queue depth); 0: never.
    vllm_metrics_interval_s: float = Field(default=5.0, ge=0)

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        v = v.strip()
        if v in ("", "sqlite"):
            return ""
        if not v.startswith("etcd://"):
            raise ValueError('must be "sqlite" or "etcd://host:port,host:port,..."')
        parse_endpoints(v)
        return v

    def replica_urls(self) -> dict[ProviderName, list[str]]:
        """Each engine's replicas from the settings: the list, else the single URL."""
        return {"ollama": self.engine_replicas("ollama"), "vllm": self.engine_replicas("vllm")}

    @property
    def etcd_endpoints(self) -> list[str]:
        """The etcd members named by ``store`` (empty: SQLite)."""
        return parse_endpoints(self.store) if self.store else []

    @model_validator(mode="after")
    def _consistent(self) -> ControlSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        steps = self.split_steps
        if not steps or any(not 1 <= s <= 99 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("split_steps must be strictly increasing, each in [1, 99]")
        if self.stats_slot_s > self.stats_retention_s:
            raise ValueError("stats_slot_s must not exceed stats_retention_s")
        if self.gonogo_window_s > self.stats_retention_s:
            raise ValueError("gonogo_window_s must not exceed stats_retention_s")
        if self.gonogo_latency_go_ms > self.gonogo_latency_no_go_ms:
            raise ValueError("gonogo_latency_go_ms must not exceed gonogo_latency_no_go_ms")
        if self.gonogo_shadow_error_go > self.gonogo_shadow_error_no_go:
            raise ValueError("gonogo_shadow_error_go must not exceed gonogo_shadow_error_no_go")
        if (
            self.store_audit_retention_days
            and self.store_audit_retention_days < self.store_decision_retention_days
        ):
            raise ValueError("store_audit_retention_days (0: never) must not be the shorter")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def retention(self) -> Retention:
        return Retention(
            keep_versions=self.store_keep_versions,
            decision_retention_s=self.store_decision_retention_days * DAY,
            audit_retention_s=self.store_audit_retention_days * DAY,
        )

    @property
    def store_max_bytes(self) -> int | None:
        return None if self.store_max_mb is None else int(self.store_max_mb * 1024 * 1024)

    def credentials(self) -> Credentials:
        """Every credential the service accepts (raises ValueError on a conflicting set)."""
        return build_credentials(
            operator_token=self.auth_token,
            reader_token=self.reader_token,
            router_token=self.router_token,
            credentials_file=self.credentials_file,
            mtls=self.tls_client_ca_file is not None,
            cert_operators=self.tls_operator_names,
            cert_readers=self.tls_reader_names,
            insecure=self.insecure,
        )
