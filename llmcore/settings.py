"""The settings base both services build on: pydantic-settings with a YAML file source.

Precedence, lowest first: the YAML file named by ``config_file`` (``<PREFIX>CONFIG_FILE`` in the
environment, or ``--config``), then the environment, then constructor arguments (the command-line
flags ``main`` passes). The environment beats the file so that one deployment file can be shared
and a single value overridden per pod or per run, the usual twelve-factor order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    YamlConfigSettingsSource,
)

from llmcore.replicas import check_urls, split_urls


class _MappingYamlSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, refusing a file whose top level is not a mapping (the
    library would fail later with a message that does not name the file)."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        if not isinstance(data, dict):
            raise ValueError(f"{file_path}: top level must be a mapping")
        return data


class YamlFileSettings(BaseSettings):
    """A ``BaseSettings`` with an optional YAML file; subclasses set ``model_config``
    (``env_prefix``, ``extra="forbid"``) and their fields."""

    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        named = init_settings().get("config_file") or env_settings().get("config_file")
        path = Path(named) if named else None
        if path is not None and not path.is_file():
            # The library skips a missing file silently; a file the operator named must exist.
            raise FileNotFoundError(f"config file not found: {path}")
        return (init_settings, env_settings, _MappingYamlSource(settings_cls, yaml_file=path))


def http_url(value: str) -> str:
    """An engine URL: http:// or https://, without a trailing slash (paths are appended)."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class EngineUrlSettings(YamlFileSettings):
    """The two engines' URLs, which both services read. The unprefixed environment names
    (``OLLAMA_BASE_URL``, ``VLLM_BASE_URL``) are what operators already use."""

    ollama_base_url: str = Field(
        default="http://127.0.0.1:11434",
        validation_alias=AliasChoices("ollama_base_url", "OLLAMA_BASE_URL"),
    )
    vllm_base_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("vllm_base_url", "VLLM_BASE_URL"),
    )
    # Engine pools (docs/pools.md): comma-separated replica URLs; when set they replace the
    # single URL above.
    ollama_base_urls: str = Field(
        default="", validation_alias=AliasChoices("ollama_base_urls", "OLLAMA_BASE_URLS")
    )
    vllm_base_urls: str = Field(
        default="", validation_alias=AliasChoices("vllm_base_urls", "VLLM_BASE_URLS")
    )

    @field_validator("ollama_base_url", "vllm_base_url")
    @classmethod
    def _engine_url(cls, v: str) -> str:
        return http_url(v)

    @field_validator("ollama_base_urls", "vllm_base_urls")
    @classmethod
    def _engine_urls(cls, v: str) -> str:
        return check_urls(v)

    def listed_replicas(self, engine: str) -> list[str]:
        """The replica list of ``engine`` ("ollama" or "vllm"), empty when not set."""
        return split_urls(self.ollama_base_urls if engine == "ollama" else self.vllm_base_urls)

    def engine_replicas(self, engine: str) -> list[str]:
        """The replica list of ``engine``, else its single URL."""
        single = self.ollama_base_url if engine == "ollama" else self.vllm_base_url
        return self.listed_replicas(engine) or [single.rstrip("/")]
