"""The built wheel, installed into a fresh virtualenv outside the checkout, is a
working service on PostgreSQL, Redis and SMTP (issue 22, item 1).

deploy/build.sh builds the wheel and installs it (the script the Dockerfile
runs); every command then runs from an empty folder with the checkout off
``sys.path``, in ``CONSENT_ENV=production`` with production's settings, the
way docs/deployment.md tells a sysadmin to run it: ``flask db upgrade``,
gunicorn with ``gunicorn_conf`` serving ``/subscribe`` and its stylesheet, and
a ``dramatiq worker`` that delivers the confirmation mail to an SMTP server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _postgres_database, service_unavailable
from tests.mailing.conftest import SmtpSink, free_port
from tests.reliability.production import OwnRedis, post

ROOT = Path(__file__).resolve().parents[2]
SIGNUP = {"topics": "newsletter", "consent": "on", "form_id": "hosted", "language": "en"}


@pytest.fixture(scope="module")
def venv(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding only the wheel and its dependencies.

    Built once, on the pass with PostgreSQL: the production shape, and the
    half-minute build is not paid twice per suite."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a server database: runs on the suite's second pass")
    folder = tmp_path_factory.mktemp("installed")
    target = folder / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # The venv's Python is this one (3.11+), not whatever python3 the PATH finds first.
    env["PYTHON"] = sys.executable
    env["WHEEL_DIR"] = str(folder / "dist")
    # A throwaway install: no .pyc files written ahead (the image writes them).
    env["PIP_NO_COMPILE"] = "1"
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "build.sh"), str(target)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture
def database_server_url(venv: Path) -> Iterator[str]:
    """A fresh, empty PostgreSQL database: the migrations start from nothing."""
    url, drop = _postgres_database(os.environ["TEST_DATABASE_URL"])
    yield url
    drop()


class Installed:
    """Runs the installed commands from an empty folder with production's settings."""

    def __init__(self, venv: Path, folder: Path, **settings: str) -> None:
        self.bin = venv / "bin"
        self.cwd = folder / "empty"
        self.cwd.mkdir()
        self.folder = folder
        self.env = {
            k: v
            for k, v in os.environ.items()
            # Nothing of the checkout or the test run may leak in.
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FLASK_APP", "CONSENT_ENV")
            and not k.startswith(("TEST_", "PYTEST_"))
        }
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            CONSENT_ENV="production",
            INSTANCE_PATH=str(folder / "instance"),
            SECRET_KEY="deploy-test-" + "s" * 40,
            SUPPRESSION_KEY="deploy-test-" + "k" * 40,
            INPROCESS_WORKER="0",
            **settings,
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]], cwd=self.cwd, env=self.env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(self.bin / command[0]), *command[1:]], cwd=self.cwd, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        # Graceful shutdown is not what is tested here: bounded, then killed.
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def installed(
    venv: Path, database_server_url: str, tmp_path: Path
) -> Iterator[tuple[Installed, SmtpSink, str]]:
    redis = OwnRedis(tmp_path)
    redis.start()
    sink = SmtpSink()
    sink.start()
    port = free_port()
    service = Installed(
        venv,
        tmp_path,
        DATABASE_URL=database_server_url,
        DRAMATIQ_BROKER_URL=redis.url(0),
        DRAMATIQ_NAMESPACE=f"consent-deploy-{uuid.uuid4().hex[:8]}",
        RATELIMIT_STORAGE_URI=redis.url(1),
        SMTP_URL=sink.url,
        PUBLIC_BASE_URL="https://consent.example",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
    )
    try:
        yield service, sink, f"http://127.0.0.1:{port}"
    finally:
        service.stop()
        sink.stop()
        redis.stop()


def _healthcheck_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^HEALTHCHECK .*\\\n\s*CMD (\[.*\])$", text, re.MULTILINE)
    assert found is not None, "HEALTHCHECK ... CMD [...] in the Dockerfile"
    return json.loads(found.group(1))


def _files(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def _served(service: Installed, url: str) -> tuple[int, str, bytes]:
    try:
        return _get(url)
    except OSError as exc:
        raise AssertionError(f"{url}: {exc}; gunicorn's log:\n{service.log('web')}") from None


def _wait_until_serving(service: Installed, web: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert web.poll() is None, "gunicorn exited:\n" + service.log("web")
        try:
            _get(base + "/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer:\n" + service.log("web"))


# Builds a virtualenv from the wheel: the long job (docs/testing.md).
@pytest.mark.long
def test_the_code_comes_from_the_virtualenv_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    service = Installed(venv, tmp_path)
    found = service.run(
        "python", "-c",
        "import app, service_files; print(app.__file__); print(service_files.root())",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    module, files = (Path(line) for line in found.stdout.split())
    assert module.is_relative_to(venv) and files.is_relative_to(venv)
    for command in ("gunicorn", "dramatiq", "flask"):  # what the units and the Procfile run
        assert (venv / "bin" / command).is_file(), command
    # Every file of the folders the service reads at run time, none forgotten
    # (a new template folder must be listed in pyproject.toml).
    for folder in ("templates", "static", "migrations", "policies", "translations"):
        in_checkout = _files(ROOT / folder)
        assert in_checkout, folder
        assert _files(files / folder) == in_checkout, folder


# Builds a virtualenv from the wheel: the long job (docs/testing.md).
@pytest.mark.long
def test_the_installed_wheel_migrates_serves_and_delivers(
    installed: tuple[Installed, SmtpSink, str],
) -> None:
    service, sink, base = installed

    upgraded = service.run("flask", "--app", "app", "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr

    web = service.start("web", "gunicorn", "-c", "python:gunicorn_conf", "app:create_app()")
    _wait_until_serving(service, web, base)
    status, _, body = _served(service, base + "/subscribe")
    assert status == 200
    stylesheet = re.search(rb'<link rel="stylesheet" href="([^"]+)"', body)
    assert stylesheet is not None, body[:500]
    status, kind, css = _served(service, base + stylesheet.group(1).decode())
    assert (status, kind.split(";")[0]) == (200, "text/css")
    assert css == (ROOT / "static" / "app.css").read_bytes()
    # gunicorn runs with the shipped configuration: gthread workers.
    assert "Using worker: gthread" in service.log("web")
    # The image's HEALTHCHECK command, as the container would run it.
    checked = service.run(*_healthcheck_command())
    assert checked.returncode == 0, checked.stderr

    service.start("worker", "dramatiq", "worker", "--processes", "1", "--threads", "2")
    address = f"deploy-{uuid.uuid4().hex[:8]}@example.se"
    status, answer = post(base + "/subscribe", {**SIGNUP, "email": address})
    assert status == 200, answer[:500]
    try:
        sink.wait_for(1, timeout=60)
    except AssertionError:
        raise AssertionError("no mail delivered; worker log:\n" + service.log("worker")) from None
    assert sink.recipients == [address]
    assert "https://consent.example/" in sink.messages[0].get_body(("plain",)).get_content()


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on deploy/systemd/, with /opt/consent (where the
    docs install the venv) pointed at this run's virtualenv, which has the
    project's commands as the installed wheel has them (checked above)."""
    analyze = Path("/usr/bin/systemd-analyze")
    if not analyze.exists():
        # .ci/setup installs it; under CI its absence fails (service_unavailable).
        service_unavailable("systemd-analyze is not installed (Debian package systemd)")
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {
        "consent-web.service", "consent-worker.service", "consent-scheduler.service",
    }  # fmt: skip
    for unit in units:
        text = unit.read_text().replace("/opt/consent/", f"{Path(sys.executable).parent.parent}/")
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        [str(analyze), "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # verify exits 0 on a directive it cannot parse; what it prints is the failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
