"""The scheduler (kernel.scheduling): turns every host agrees on, each sent once,
by one process or two, and the development install that schedules by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa

from extensions import broker, db
from kernel import scheduling
from kernel.models import ScheduledJob
from kernel.scheduling import Periodic, run_turn, take_turn
from tests.conftest import TEST_CONFIG

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAILY = Periodic("retention-daily", "run_daily_retention", daily_at=scheduling.daily_at("02:30"))
SWEEP = Periodic("outbox-sweep", "sweep_outbox", every=timedelta(seconds=60))


class Sent(dramatiq.Middleware):
    def __init__(self) -> None:
        self.actors: list[str] = []

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: Any) -> None:
        self.actors.append(message.actor_name)


@pytest.fixture
def sent(app: Any) -> Iterator[Sent]:
    spy = Sent()
    broker.add_middleware(spy)
    yield spy
    broker.middleware.remove(spy)
    broker.flush_all()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_daily_turn_is_the_last_daily_time_passed() -> None:
    assert DAILY.turn(at("2026-12-06 02:30:00")) == at("2026-12-06 02:30")
    assert DAILY.turn(at("2026-12-06 13:00:00")) == at("2026-12-06 02:30")
    assert DAILY.turn(at("2026-12-06 02:29:59")) == at("2026-12-05 02:30")


def test_interval_turns_do_not_depend_on_when_a_scheduler_started() -> None:
    # Two hosts checking at any moment of the same minute name the same turn.
    assert SWEEP.turn(at("2026-12-06 10:00:01")) == SWEEP.turn(at("2026-12-06 10:00:59"))
    assert SWEEP.turn(at("2026-12-06 10:01:00")) == at("2026-12-06 10:01")


def test_a_turn_is_sent_once_however_often_it_is_checked(app_ctx, sent) -> None:
    now = at("2026-12-06 03:00")
    assert run_turn(DAILY, now)
    assert not run_turn(DAILY, now + timedelta(minutes=1)), "the same day's turn again"
    assert sent.actors == ["run_daily_retention"]
    assert run_turn(DAILY, now + timedelta(days=1)), "the next day's turn"
    assert sent.actors == ["run_daily_retention"] * 2
    row = db.session.get(ScheduledJob, "retention-daily", populate_existing=True)
    assert row is not None and row.last_due_at == at("2026-12-07 02:30")


def test_schedulers_checking_at_the_same_moment_take_a_turn_once(app) -> None:
    """Eight threads, eight connections (real concurrency on PostgreSQL)."""
    due = at("2026-12-06 02:30")
    with app.app_context():
        assert take_turn("retention-daily", due - timedelta(days=1)) is not None
        db.session.remove()
    start = threading.Barrier(8)
    taken: list[object] = []

    def check() -> None:
        with app.app_context():
            start.wait()
            taken.append(take_turn("retention-daily", due))
            db.session.remove()

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([t for t in taken if t is not None]) == 1


def test_a_turn_the_broker_refused_is_sent_at_the_next_check(app_ctx, sent, monkeypatch) -> None:
    def broker_down(actor_name: str) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(scheduling, "send_job", broker_down)
    assert not run_turn(DAILY, at("2026-12-06 03:00"))
    monkeypatch.undo()
    assert run_turn(DAILY, at("2026-12-06 03:01"))
    assert sent.actors == ["run_daily_retention"]


def _scheduler(database_url: str, redis_url: str, namespace: str, log: Path) -> Any:
    env = {
        **os.environ,
        "CONSENT_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_CONFIG["SECRET_KEY"],
        "SUPPRESSION_KEY": TEST_CONFIG["SUPPRESSION_KEY"],
        "DRAMATIQ_BROKER_URL": redis_url,
        "DRAMATIQ_NAMESPACE": namespace,
        "OUTBOX_SWEEP_INTERVAL_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [str(BIN / "flask"), "--app", "app", "scheduler", "run"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _queued(redis_url: str, namespace: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(redis_url)
    actors = []
    for key in client.keys(f"{namespace}:*.msgs"):
        actors += [json.loads(raw)["actor_name"] for raw in client.hvals(key)]
    return actors


def test_two_scheduler_processes_send_each_turn_once(
    app, database_url, redis_url, tmp_path
) -> None:
    """Two `flask scheduler run` on one database and one Redis, no worker: the
    daily jobs are queued once, the sweeper once a second, not twice."""
    import redis

    namespace = f"consent-sched-{uuid.uuid4().hex[:8]}"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [_scheduler(database_url, redis_url, namespace, log) for log in logs]
    try:
        deadline = time.monotonic() + 30
        before = 0
        while time.monotonic() < deadline and before < 2:
            assert all(p.poll() is None for p in processes), logs[0].read_text()
            time.sleep(0.2)
            before = _queued(redis_url, namespace).count("sweep_outbox")
        began = time.monotonic()
        time.sleep(4)
        queued = _queued(redis_url, namespace)
        added = queued.count("sweep_outbox") - before
        elapsed = time.monotonic() - began
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in processes]
        client = redis.Redis.from_url(redis_url)
        for key in client.keys(f"{namespace}:*"):
            client.delete(key)
    assert queued.count("run_daily_retention") == 1
    assert queued.count("send_art14_notices") == 1
    # One a second: twice as many would mean both sent each turn.
    assert 2 <= added <= elapsed + 1.5, (added, elapsed)
    assert codes == [0, 0], [log.read_text() for log in logs]
    for log in logs:
        assert "scheduler: stopped" in log.read_text()
        assert "retention-daily -> run_daily_retention, daily at 02:30 UTC" in log.read_text()


def test_a_development_install_schedules_and_runs_the_daily_job_alone(tmp_path) -> None:
    """`flask run` with no broker: the in-process worker runs what the in-process
    scheduler sends, from the first request on; no other process is needed."""
    database = tmp_path / "dev.db"
    env = {
        **os.environ,
        "CONSENT_ENV": "development",
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": TEST_CONFIG["SECRET_KEY"],
        "SUPPRESSION_KEY": TEST_CONFIG["SUPPRESSION_KEY"],
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DRAMATIQ_BROKER_URL", None)
    flask = str(BIN / "flask")
    subprocess.run(
        [flask, "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    port = _free_port()
    log = tmp_path / "web.log"
    web = subprocess.Popen(
        [flask, "--app", "app", "run", "--port", str(port), "--no-reload"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        deadline = time.monotonic() + 30
        runs: list[Any] = []
        while time.monotonic() < deadline and not runs:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe", timeout=2).close()
            except OSError:
                time.sleep(0.2)
                continue
            with engine.connect() as connection:
                runs = connection.execute(
                    sa.text("SELECT started_by FROM retention_run WHERE status = 'completed'")
                ).all()
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            health = json.load(answer)
    finally:
        web.terminate()
        web.wait(timeout=15)
        engine.dispose()
    assert [r.started_by for r in runs] == ["system:daily-retention"], log.read_text()
    assert health["status"] == "ok" and health["retention"] == "ok", health


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
