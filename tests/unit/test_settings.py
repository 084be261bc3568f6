from __future__ import annotations

from pathlib import Path

import pytest

from quant_core.errors import ConfigError
from quant_core.settings import DEFAULT_SOURCE, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("QONLINE_") or key.startswith("AWS_"):
            monkeypatch.delenv(key, raising=False)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.lake_uri == "lake" and s.source == DEFAULT_SOURCE
    assert s.resolved_mlflow_tracking_uri == f"sqlite:///{tmp_path / 'lake-mlflow.db'}"


def test_precedence_file_then_env_then_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "q.yaml"
    cfg.write_text("lake_uri: /from/file\nsource: csv:/from/file\nnum_threads: 3\nstrategies: {s1: {step: 20}}\n")
    monkeypatch.setenv("QONLINE_CONFIG", str(cfg))
    s = load_settings()
    assert (s.lake_uri, s.source, s.num_threads) == ("/from/file", "csv:/from/file", 3)
    assert s.strategies == {"s1": {"step": 20}}
    monkeypatch.setenv("QONLINE_LAKE_URI", "/from/env")
    assert load_settings().lake_uri == "/from/env"
    assert load_settings(lake_uri="/from/flag").lake_uri == "/from/flag"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("QONLINE_REDIS_URL", "redis://:pw@127.0.0.1:6379/1")
    s = load_settings()
    text = repr(s) + str(s.redacted())
    assert "hunter2" not in text and "pw@" not in text
    assert s.s3.secret_access_key is not None and s.s3.secret_access_key.get_secret_value() == "hunter2"


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("num_threads: zero\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*num_threads"):
        load_settings(cfg)
    cfg.write_text("lake_uri: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(cfg)
    cfg.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")


def test_exchange_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().exchange == "none"
    monkeypatch.setenv("QONLINE_EXCHANGE", "xshg")
    assert load_settings().exchange == "XSHG"
    monkeypatch.setenv("QONLINE_EXCHANGE", "NO NE!")
    with pytest.raises(ConfigError, match="exchange.*not an exchange code"):
        load_settings()


def test_a_lake_flag_that_differs_from_the_file_wins_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "q.yaml"
    cfg.write_text("lake_uri: /from/file\n")
    with caplog.at_level("WARNING", logger="quant_core.settings"):
        assert load_settings(cfg, lake_uri="/from/flag").lake_uri == "/from/flag"
        assert load_settings(cfg, lake_uri="/from/flag").lake_uri == "/from/flag"
    said = [r.getMessage() for r in caplog.records if "wins over" in r.getMessage()]
    assert said == [f"lake_uri: the command line's '/from/flag' wins over '/from/file' from config file {cfg}"]
