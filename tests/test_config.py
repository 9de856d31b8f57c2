"""``Config``: environment > APIPod(...)/CLI flags > apipod-deploy/apipod.json > defaults,
and every mistake is a ConfigError that says what to fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from apipod import APIPod
from apipod.config import Config, service_defaults
from apipod.errors import ConfigError

NO_ENV: dict[str, str] = {}


def deploy_file(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "apipod-deploy" / "apipod.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No APIPOD_* variables and a working directory without apipod-deploy/."""
    for key in list(os.environ):
        if key.startswith("APIPOD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults(tmp_path: Path) -> None:
    config = Config.load({}, env=NO_ENV, deploy_file=tmp_path / "missing.json")
    assert config == Config()
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert (config.compute, config.provider) == ("dedicated", "localhost")
    assert config.queue_enabled is False
    assert (config.max_workers, config.gpus, config.queue_size) == (1, "auto", 500)
    assert (config.job_ttl, config.job_timeout, config.max_attempts) == (3600.0, 3600.0, 3)
    assert (config.database_url, config.api_key) == (None, None)
    assert config.data_dir == str(Path.cwd() / "apipod-data")


def test_the_default_data_dir_sits_beside_the_service_file(tmp_path: Path) -> None:
    service = tmp_path / "project" / "service.py"
    service.parent.mkdir()
    service.write_text("")
    beside = service_defaults(service)
    missing = tmp_path / "missing.json"
    config = Config.load({}, env=NO_ENV, deploy_file=missing, defaults=beside)
    assert config.data_dir == str(tmp_path / "project" / "apipod-data")
    # every explicit setting wins over it
    explicit = str(tmp_path / "chosen")
    chosen = [
        Config.load({}, env={"APIPOD_DATA_DIR": explicit}, deploy_file=missing, defaults=beside),
        Config.load({"data_dir": explicit}, env=NO_ENV, deploy_file=missing, defaults=beside),
        Config.load(
            {}, env=NO_ENV, deploy_file=missing, flags={"data_dir": explicit}, defaults=beside
        ),
        Config.load(
            {},
            env=NO_ENV,
            deploy_file=deploy_file(tmp_path, {"queue": {"data_dir": explicit}}),
            defaults=beside,
        ),
    ]
    assert [c.data_dir for c in chosen] == [explicit] * 4
    assert service_defaults(None) == {} and service_defaults("<stdin>") == {}


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = Config.load({"data_dir": str(tmp_path / "d")}, env=NO_ENV, deploy_file=tmp_path / "x")
    assert config.resolved_database_url == f"sqlite:///{tmp_path / 'd' / 'apipod.db'}"
    other = config.replace(database_url="postgresql://db/apipod")
    assert other.resolved_database_url == "postgresql://db/apipod"


def test_deploy_file_beats_defaults(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queue": {"max_workers": 3, "queue_size": 20, "job_ttl": 60}})
    config = Config.load({}, env=NO_ENV, deploy_file=path)
    assert (config.max_workers, config.queue_size, config.job_ttl) == (3, 20, 60.0)
    assert config.port == 8000


def test_arguments_beat_the_deploy_file(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queue": {"max_workers": 3, "queue_size": 20}})
    config = Config.load({"max_workers": 5, "port": 9100}, env=NO_ENV, deploy_file=path)
    assert (config.max_workers, config.queue_size, config.port) == (5, 20, 9100)


def test_environment_beats_arguments_and_the_deploy_file(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queue": {"max_workers": 3, "queue_size": 20, "job_ttl": 60}})
    env = {"APIPOD_MAX_WORKERS": "7", "APIPOD_QUEUE_SIZE": "9", "APIPOD_PORT": "9200"}
    config = Config.load({"max_workers": 5, "port": 9100}, env=env, deploy_file=path)
    assert (config.max_workers, config.queue_size, config.port, config.job_ttl) == (
        7,
        9,
        9200,
        60.0,
    )


def test_none_arguments_do_not_override(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queue": {"max_workers": 3}})
    config = Config.load({"max_workers": None, "host": None}, env=NO_ENV, deploy_file=path)
    assert (config.max_workers, config.host) == (3, "127.0.0.1")


def test_environment_values_are_parsed(tmp_path: Path) -> None:
    env = {
        "APIPOD_COMPUTE": "serverless",
        "APIPOD_PORT": " 9300 ",
        "APIPOD_JOB_TIMEOUT": "2.5",
        "APIPOD_GPUS": "0,1",
        "APIPOD_API_KEY": "k",
        "APIPOD_MEDIA_URL_ALLOWLIST": "127.0.0.1/32, images.example.com",
        "APIPOD_DATABASE_URL": "",
        "OTHER_PORT": "1",
    }
    config = Config.load({}, env=env, deploy_file=tmp_path / "x")
    assert config.compute == "serverless" and config.queue_enabled is True
    assert (config.port, config.job_timeout, config.gpus) == (9300, 2.5, "0,1")
    assert config.api_key == "k"
    assert config.media_url_allowlist == ("127.0.0.1/32", "images.example.com")
    assert config.database_url is None


def test_to_env_round_trips(tmp_path: Path) -> None:
    config = Config.load(
        {"port": 9400, "gpus": "none", "media_url_allowlist": ("10.0.0.0/8",), "api_key": "a"},
        env=NO_ENV,
        deploy_file=tmp_path / "x",
    )
    env = config.to_env()
    assert env["APIPOD_PORT"] == "9400"
    assert "APIPOD_DATABASE_URL" not in env
    assert Config.load({}, env=env, deploy_file=tmp_path / "x") == config


def test_deploy_file_is_read_from_the_working_directory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deploy_file(tmp_path, {"queue": {"queue_size": 33}, "server": {"port": 9500}})
    config = Config.load()
    assert (config.queue_size, config.port) == (33, 9500)


# --- mistakes ------------------------------------------------------------------------------


def test_unknown_key_in_the_deploy_file(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queue": {"max_workers": 2, "max_wrokers": 3}})
    with pytest.raises(ConfigError) as info:
        Config.load({}, env=NO_ENV, deploy_file=path)
    message = str(info.value)
    assert "unknown setting(s): max_wrokers" in message
    assert "max_workers" in message  # the list of known settings helps to fix the typo


def test_unknown_section_in_the_deploy_file(tmp_path: Path) -> None:
    path = deploy_file(tmp_path, {"queues": {"max_workers": 2}})
    with pytest.raises(ConfigError, match="unknown section 'queues'") as info:
        Config.load({}, env=NO_ENV, deploy_file=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"queue": 5}'])
def test_malformed_deploy_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "apipod.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Config.load({}, env=NO_ENV, deploy_file=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"APIPOD_MAX_WORKERS": "abc"}, ["max_workers", "'abc'"]),
        ({"APIPOD_PORT": "80.5"}, ["port", "'80.5'"]),
        ({"APIPOD_JOB_TTL": "soon"}, ["job_ttl", "'soon'"]),
        ({"APIPOD_PORT": "70000"}, ["port", "1..65535", "70000"]),
        ({"APIPOD_MAX_WORKERS": "0"}, ["max_workers", "at least 1"]),
        ({"APIPOD_JOB_TIMEOUT": "-1"}, ["job_timeout", "positive"]),
        ({"APIPOD_GPUS": "first"}, ["gpus", "'0,1'", "'first'"]),
        ({"APIPOD_COMPUTE": "cloud"}, ["compute", "'cloud'", "serverless"]),
        ({"APIPOD_ROLE": "boss"}, ["role", "'boss'", "workers"]),
        ({"APIPOD_PROVIDER": "runpod"}, ["provider 'runpod'", "localhost", "APIPOD_PROVIDER"]),
        ({"APIPOD_MAX_UPLOAD_FILE_SIZE_MB": "0"}, ["max_upload_file_size_mb", "positive"]),
    ],
)
def test_bad_values_say_what_to_fix(tmp_path: Path, env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load({}, env=env, deploy_file=tmp_path / "x")
    for word in words:
        assert word in str(info.value)


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_workers"):
        Config.load({"max_workers": True}, env=NO_ENV, deploy_file=tmp_path / "x")


# --- APIPod(...) ------------------------------------------------------------------------------


def test_apipod_arguments_feed_the_config(clean_env: pytest.MonkeyPatch) -> None:
    app = APIPod(title="configured", description="d", max_workers=4, max_upload_file_size_mb=7)
    assert (app.config.max_workers, app.config.max_upload_file_size_mb) == (4, 7.0)
    assert (app.title, app.description) == ("configured", "d")
    assert app.config.compute == "dedicated"


def test_environment_beats_apipod_arguments(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("APIPOD_QUEUE_SIZE", "11")
    clean_env.setenv("APIPOD_PORT", "9600")
    app = APIPod(queue_size=3, port=9001)
    assert (app.config.queue_size, app.config.port) == (11, 9600)


def test_apipod_arguments_beat_the_deploy_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deploy_file(tmp_path, {"queue": {"queue_size": 40, "job_ttl": 5}})
    app = APIPod(queue_size=3)
    assert (app.config.queue_size, app.config.job_ttl) == (3, 5.0)


def test_cli_flags_override_arguments_and_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    app = APIPod(port=9001, max_workers=2)
    assert app.configure(port=9002).port == 9002
    assert app.config.max_workers == 2
    clean_env.setenv("APIPOD_PORT", "9003")
    clean_env.setenv("APIPOD_MAX_WORKERS", "5")
    config = app.configure(port=9004)
    assert (config.port, config.max_workers) == (9004, 5)
    # a flag not given leaves the environment's value; the flag given once is not sticky
    assert app.configure().port == 9003


def test_data_dir_is_absolute_from_the_moment_it_is_read(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = Config.load({"data_dir": "rel/dir"}, env=NO_ENV, deploy_file=tmp_path / "x")
    assert config.data_dir == str(tmp_path / "rel" / "dir")
    assert Config.load({}, env={"APIPOD_DATA_DIR": "~/q"}).data_dir == str(Path.home() / "q")
    assert config.to_env()["APIPOD_DATA_DIR"] == str(tmp_path / "rel" / "dir")


def test_unsupported_provider_argument(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        APIPod(compute="serverless", provider="runpod")
    assert "provider 'runpod' is not supported" in str(info.value)
    assert "localhost" in str(info.value)


def test_unknown_deploy_key_stops_apipod(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    deploy_file(tmp_path, {"queue": {"bogus": 1}})
    with pytest.raises(ConfigError, match="unknown setting"):
        APIPod()


def test_result_settings_are_checked() -> None:
    config = Config.load(env={"APIPOD_INLINE_RESULT_MAX_MB": "2.5"}, deploy_file=Path("none"))
    assert (config.inline_result_max_mb, config.result_image_format) == (2.5, "png")
    with pytest.raises(ConfigError, match="result_image_format must be one of"):
        Config.load(env={"APIPOD_RESULT_IMAGE_FORMAT": "gif"}, deploy_file=Path("none"))
    with pytest.raises(ConfigError, match="inline_result_max_mb must not be negative"):
        Config.load({"inline_result_max_mb": -1}, env={}, deploy_file=Path("none"))
