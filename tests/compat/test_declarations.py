"""What a service file written for the original APIPod meets before any request: imports,
constructor spellings, configuration errors, route normalisation, signature checks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from pydantic import BaseModel

import apipod
from apipod import APIPod, ImageFile
from apipod.app.pod import normalise_route
from apipod.endpoint import build_spec
from apipod.errors import ConfigError, EndpointDefinitionError

# What the original's __init__ exported that this package has too (its LLM helpers, job
# classes and streaming stores are not part of this package).
ORIGINAL_NAMES = [
    "APIPod",
    "JobProgress",
    "FileModel",
    "JobLinks",
    "JobMetrics",
    "JobResult",
    "MediaFile",
    "ImageFile",
    "AudioFile",
    "VideoFile",
    "MediaList",
    "MediaDict",
]
SEED_NAMES = ["APIPod", "JobProgress"]  # /work/shared/seed imports these from apipod


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("APIPOD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_the_original_names_import() -> None:
    for name in [*ORIGINAL_NAMES, *SEED_NAMES]:
        assert getattr(apipod, name) is not None, name
        assert name in apipod.__all__, name
    assert issubclass(apipod.FileModel, BaseModel) and issubclass(apipod.JobResult, BaseModel)
    from media_toolkit import MediaDict, MediaList

    assert (apipod.MediaList, apipod.MediaDict) == (MediaList, MediaDict)


def test_file_model_and_job_result_describe_real_answers() -> None:
    model = apipod.FileModel(file_name="a.png", content_type="image/png", content="AAAA")
    assert model.model_dump() == {
        "file_name": "a.png",
        "content_type": "image/png",
        "content": "AAAA",
    }
    job = apipod.JobResult.model_validate(
        {
            "job_id": "j1",
            "status": "finished",
            "result": model.model_dump(),
            "progress": 1.0,
            "metrics": {"created_at": "2026-01-01T00:00:00.000000Z", "execution_time_s": 0.5},
            "links": {"status": "/status/j1", "cancel": "/cancel/j1"},
        }
    )
    assert job.links.status == "/status/j1" and job.metrics.execution_time_s == 0.5


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [{"compute": "invalid"}, {"simulate": "invalid"}, {"simulate": "serverless-invalid"}],
)
def test_configuration_errors_are_value_errors_saying_invalid(
    clean_env: pytest.MonkeyPatch, kwargs: dict[str, str]
) -> None:
    with warnings.catch_warnings(), pytest.raises(ValueError, match="^Invalid") as info:
        warnings.simplefilter("ignore", DeprecationWarning)
        APIPod(**kwargs)
    assert isinstance(info.value, ConfigError)


def test_every_config_error_starts_with_invalid() -> None:
    assert str(ConfigError("port must be in 1..65535")).startswith("Invalid configuration: ")
    assert str(ConfigError("Invalid port")) == "Invalid port"


@pytest.mark.parametrize(
    ("simulate", "compute"),
    [("serverless", "serverless"), ("serverless-localhost", "serverless"), ("", "serverless")],
)
def test_simulate_is_the_original_spelling_of_queue_mode(
    clean_env: pytest.MonkeyPatch, simulate: str, compute: str
) -> None:
    with pytest.warns(DeprecationWarning) as caught:
        app = APIPod(simulate=simulate)
    assert (app.config.compute, app.config.provider) == (compute, "localhost")
    assert app.config.queue_enabled
    [warning] = caught
    message = str(warning.message)
    assert "\n" not in message and "compute='serverless'" in message
    assert "provider='localhost'" in message
    assert warning.filename == __file__  # points at the caller's line


def test_simulate_with_another_provider_names_the_supported_ones(
    clean_env: pytest.MonkeyPatch,
) -> None:
    with warnings.catch_warnings(), pytest.raises(ValueError) as info:
        warnings.simplefilter("ignore", DeprecationWarning)
        APIPod(simulate="serverless-runpod")
    assert "provider 'runpod' is not supported" in str(info.value)
    assert "localhost" in str(info.value)


def test_simulate_and_compute_together_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="either simulate= or compute="):
        APIPod(simulate="serverless", compute="serverless")


# --- routes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "served"),
    [
        ("/single_file_upload", "/single-file-upload"),
        ("Echo_Image", "/echo-image"),
        ("/v1/Text2Speech", "/v1/text2speech"),
        ("/a__b//c_", "/a-b/c"),
        ("/café au lait", "/cafe-au-lait"),
        ("/already-fine", "/already-fine"),
    ],
)
def test_routes_are_normalised_as_the_original_did(written: str, served: str) -> None:
    assert normalise_route(written) == served


def test_two_endpoints_on_one_normalised_route_fail_at_decoration(
    clean_env: pytest.MonkeyPatch,
) -> None:
    app = APIPod()

    @app.endpoint("/make_image")
    def first() -> None: ...

    with pytest.raises(EndpointDefinitionError) as info:

        @app.endpoint("/Make-Image")
        def second() -> None: ...

    message = str(info.value)
    assert message.startswith("Invalid endpoint")
    assert "first" in message and "second" in message and "/make-image" in message
    assert list(app.endpoints) == ["/make-image"]


# --- signatures --------------------------------------------------------------------------------
class Opaque:
    """A type APIPod cannot read from a request."""


def test_an_unsupported_parameter_type_is_refused_at_decoration() -> None:
    def run(prompt: str, thing: Opaque) -> None: ...

    with pytest.raises(EndpointDefinitionError) as info:
        build_spec(run, "/run")
    message = str(info.value)
    for words in ("/run", "run", "'thing'", "Opaque", "Supported types", "ImageFile"):
        assert words in message, words
    assert "arbitrary_types_allowed" not in message


def test_var_args_are_refused_at_decoration() -> None:
    def run(*prompts: str) -> None: ...

    with pytest.raises(EndpointDefinitionError, match="/run"):
        build_spec(run, "/run")


class Settings(BaseModel):
    steps: int = 1


def test_parameter_kinds() -> None:
    def run(
        a: int | None,
        b: ImageFile | None,
        c: Settings | None,
        d: ImageFile | str,
        e: bytes,
        f: list[ImageFile] = [],  # noqa: B006
        g=None,
    ) -> None: ...

    spec = build_spec(run, "/run", methods=["POST"])
    params = {p.name: p for p in spec.params}
    assert all(not params[n].required and params[n].default is None for n in "abc")
    assert (params["d"].media_cls, params["d"].plain) == (ImageFile, str)
    assert (params["e"].media_cls, params["e"].plain) == (bytes, None)
    assert params["f"].is_list and params["f"].media_cls is ImageFile and params["f"].default == []
    assert params["g"].media_cls is None and params["g"].default is None
    assert [p.name for p in spec.media_params] == ["b", "d", "e", "f"]
