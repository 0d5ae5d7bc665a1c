"""llmcore.settings.YamlFileSettings: YAML file < environment < constructor arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from llmcore.settings import YamlFileSettings


class _Demo(YamlFileSettings):
    model_config = SettingsConfigDict(env_prefix="LLMCORE_DEMO_", extra="forbid")

    port: int = 1
    token: str = "default"
    name: str = "default"


def test_precedence_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("port: 2\ntoken: from-yaml\nname: from-yaml\n")
    monkeypatch.setenv("LLMCORE_DEMO_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("LLMCORE_DEMO_TOKEN", "from-env")
    s = _Demo(name="from-flag")
    assert (s.port, s.token, s.name) == (2, "from-env", "from-flag")
    assert s.config_file == cfg


def test_config_file_as_an_argument(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("port: 3\n")
    assert _Demo(config_file=cfg).port == 3
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert _Demo(config_file=empty).port == 1  # an empty file sets nothing


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        _Demo(config_file=tmp_path / "missing.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- port\n- 2\n")
    with pytest.raises(ValueError, match=r"list\.yaml: top level must be a mapping"):
        _Demo(config_file=cfg)


def test_unknown_key_in_the_file_names_it(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("prot: 2\n")
    with pytest.raises(ValidationError, match="prot"):
        _Demo(config_file=cfg)
