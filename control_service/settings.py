"""The control service's one settings object: environment (``LLM_CONTROL_*``), an optional YAML
file, and constructor arguments, in increasing precedence. Built in ``main`` and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from control_service.state import SEED_SPLIT_STEPS


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by ``LLM_CONTROL_CONFIG_FILE`` (or the ``config_file`` argument)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: top level must be a mapping")
            self._data = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ControlSettings(BaseSettings):
    """Everything the control service process needs."""

    model_config = SettingsConfigDict(env_prefix="LLM_CONTROL_", extra="forbid")

    config_file: Path | None = None

    # Listening.
    host: str = "127.0.0.1"
    port: int = Field(default=50061, ge=0, le=65535)
    grace_period_s: float = Field(default=5.0, ge=0)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)

    # Durable state.
    db_path: Path = Path("./.run/control.db")
    # Used only when the store is empty (the first start): the SPLIT weights promote walks.
    split_steps: list[int] = Field(default_factory=lambda: list(SEED_SPLIT_STEPS))

    # Security. Empty token: that class of RPC is open.
    auth_token: str = ""
    router_token: str = ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Set: clients must present a certificate signed by this CA (mTLS).
    tls_client_ca_file: Path | None = None

    # Engines, probed for GetHealth. The unprefixed names are what operators already use.
    ollama_base_url: str = Field(
        default="http://127.0.0.1:11434",
        validation_alias=AliasChoices("ollama_base_url", "OLLAMA_BASE_URL"),
    )
    vllm_base_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("vllm_base_url", "VLLM_BASE_URL"),
    )
    probe_timeout_s: float = Field(default=0.3, gt=0)
    probe_cache_s: float = Field(default=2.0, ge=0)
    store_health_timeout_s: float = Field(default=0.3, gt=0)

    # Stats windows (for the rollback rules).
    stats_retention_s: float = Field(default=900.0, gt=0)
    stats_slot_s: float = Field(default=5.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path_value = init_settings().get("config_file") or env_settings().get("config_file")
        path = Path(path_value) if path_value else None
        return (init_settings, env_settings, _YamlSource(settings_cls, path))

    @field_validator("ollama_base_url", "vllm_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

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
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
