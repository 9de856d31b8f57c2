"""Loading a service: every way to name it, and errors that say what went wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apipod.errors import ServiceLoadError
from apipod.loader import load_app
from tests.helpers import apipod_command, service_env

GOOD = """
from apipod import APIPod
app = APIPod(title="{title}")
other = 3
"""
BROKEN = """
from apipod import APIPod
app = APIPod()


def helper():
    return missing_name_42


helper()
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("svc_good", "svc_broken", "svc_two", "svc_slow", "svc_quick"):
        sys.modules.pop(name, None)
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("form", ["svc_good.py", "svc_good", "svc_good:app", "svc_good.py:app"])
def test_every_way_to_name_a_service(folder: Path, form: str) -> None:
    write(folder, "svc_good", GOOD.format(title="good"))
    assert load_app(form).title == "good"


def test_a_path_in_another_folder_without_py(folder: Path) -> None:
    (folder / "sub").mkdir()
    write(folder / "sub", "svc_good", GOOD.format(title="sub"))
    assert load_app(str(folder / "sub" / "svc_good")).title == "sub"


def test_an_import_error_carries_the_real_traceback(folder: Path) -> None:
    path = write(folder, "svc_broken", BROKEN)
    with pytest.raises(ServiceLoadError) as info:
        load_app("svc_broken.py")
    text = str(info.value)
    assert text.startswith("importing svc_broken failed: NameError: name 'missing_name_42'")
    assert "Traceback (most recent call last)" in text
    assert f'File "{path}", line 7, in helper' in text
    assert "return missing_name_42" in text


def test_unknown_names_say_which_forms_work(folder: Path) -> None:
    with pytest.raises(ServiceLoadError, match="no file nothing_here and no module"):
        load_app("nothing_here")
    with pytest.raises(ServiceLoadError, match="service file nothing.py does not exist"):
        load_app("nothing.py")
    with pytest.raises(ServiceLoadError, match=r"a file \(service.py\), a module"):
        load_app("nothing_here")


def test_an_attribute_that_is_not_an_app_names_the_apps(folder: Path) -> None:
    write(folder, "svc_good", GOOD.format(title="good"))
    with pytest.raises(
        ServiceLoadError, match=r"'other' is int, not an APIPod app \(APIPod apps here: app\)"
    ):
        load_app("svc_good:other")


def test_the_command_prints_the_traceback_and_exits_non_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "svc_broken", BROKEN)
    result = subprocess.run(
        apipod_command("start", str(tmp_path / "svc_broken")),
        env=service_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f'File "{path}", line 7, in helper' in result.stderr, result.stderr
    assert "NameError: name 'missing_name_42' is not defined" in result.stderr


def test_a_slow_import_logs_one_warning_naming_on_worker_start(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over 2 s (or 200 MB) to import: most likely a model loaded at import time."""
    (folder / "svc_slow.py").write_text(
        "import time\n" + GOOD.format(title="s") + "time.sleep(2.1)\n"
    )
    (folder / "svc_quick.py").write_text(GOOD.format(title="q"))
    with caplog.at_level("WARNING", logger="apipod.loader"):
        load_app("svc_quick.py", warn_if_heavy=True)
        assert caplog.records == []
        load_app("svc_slow.py", warn_if_heavy=True)
    [record] = caplog.records
    assert "importing svc_slow took 2." in record.getMessage()
    assert "@app.on_worker_start" in record.getMessage()
