"""Processes the benchmarks start and stop: the web app (werkzeug or gunicorn) and
anything else that runs beside it (a dramatiq worker), each waited for until it
is ready and always stopped afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key"
SUPPRESSION_KEY = "bench-suppression-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a process running the app on the database at ``url``."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CONSENT_ENV": "testing",
        "SECRET_KEY": SECRET,
        "SUPPRESSION_KEY": SUPPRESSION_KEY,
        "CONSENT_RATELIMIT_ENABLED": "false",
        "INPROCESS_WORKER": "0",
        **extra,
    }


class Process:
    """A command in its own process, ready once ``is_ready()`` says so."""

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        is_ready: Callable[[], bool],
        *,
        what: str,
        timeout: float = 30.0,
        output: IO[Any] | int = subprocess.DEVNULL,
    ) -> None:
        self.what = what
        self.process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.process.returncode}")
            if is_ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{what} did not start within {timeout:.0f} s")

    def stop(self, timeout: float = 15.0) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WebServer(Process):
    """The app listening on a free loopback port; ready once ``/healthz`` answers."""

    def __init__(self, command: Callable[[int], Sequence[str]], env: dict[str, str], what: str):
        self.port = free_port()
        super().__init__(command(self.port), env, self._is_up, what=what)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _is_up(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.base}/healthz", timeout=10).close()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True


def werkzeug(url: str, **env: str) -> WebServer:
    """``flask run`` (threaded) on this database."""
    return WebServer(
        lambda port: [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "app",
            "run",
            "--port",
            str(port),
            "--no-reload",
            "--no-debugger",
            "--with-threads",
        ],
        app_env(url, **env),
        "the web server",
    )


def gunicorn(url: str, workers: int, threads: int, **env: str) -> WebServer:
    """``bench.wsgi:create()`` under gunicorn's gthread workers on this database."""
    return WebServer(
        lambda port: [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench.wsgi:create()",
        ],
        app_env(url, **env),
        "gunicorn",
    )
