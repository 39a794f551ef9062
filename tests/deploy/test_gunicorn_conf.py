"""gunicorn_conf: sized from the environment, refusing nonsense, and stopping
gracefully within the time every process manager gives it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name in ("PORT", "WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import gunicorn_conf

    return importlib.reload(gunicorn_conf)


def test_threads_processes_and_port_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _load(monkeypatch, PORT="9123", WEB_CONCURRENCY="3", WEB_THREADS="6")
    assert (conf.bind, conf.workers, conf.threads) == (["0.0.0.0:9123"], 3, 6)
    assert conf.worker_class == "gthread"


def test_two_processes_at_least_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 1)
    conf = _load(monkeypatch)
    assert (conf.bind, conf.workers, conf.threads) == (["0.0.0.0:8000"], 2, 4)


@pytest.mark.parametrize("value", ["four", "0", "-2", "2.5"])
def test_a_size_that_is_not_a_whole_number_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(RuntimeError, match=r"WEB_THREADS: must be a whole number of 1 or more"):
        _load(monkeypatch, WEB_THREADS=value)


def test_graceful_shutdown_ends_before_the_process_managers_kill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = _load(monkeypatch)
    unit = (ROOT / "deploy" / "systemd" / "consent-web.service").read_text()
    stop_sec = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert stop_sec is not None
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["web"]
    grace = re.fullmatch(r"(\d+)s", compose["stop_grace_period"])
    assert grace is not None
    assert conf.graceful_timeout < int(stop_sec.group(1))
    assert conf.graceful_timeout < int(grace.group(1))
    # Requests finish before the heartbeat timeout would call a process hung.
    assert conf.graceful_timeout <= conf.timeout
    assert conf.preload_app is False
