"""The production shape: a web process and a `dramatiq worker` process talking
through a real Redis, a real SMTP server receiving, a person following links."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extensions import db
from tests.conftest import TEST_CONFIG
from tests.mailing.conftest import free_port, text_of

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.redis


def _post(url: str, data: dict[str, str]) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stop_shape(
    processes: list[subprocess.Popen[bytes]],
    handles: dict[str, Any],
    redis_url: str,
    namespace: str,
) -> None:
    """Stop the shape's processes (SIGTERM, then SIGKILL after 15 s), close their
    logs and remove its queues from Redis."""
    import redis

    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    for handle in handles.values():
        handle.close()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)


def _wait_until_up(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def production_shape(
    app: Any, database_url: str, redis_url: str, smtp: Any, tmp_path: Path
) -> Iterator[str]:

    namespace = f"consent-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CONSENT_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_CONFIG["SECRET_KEY"],
        "SUPPRESSION_KEY": TEST_CONFIG["SUPPRESSION_KEY"],
        "DRAMATIQ_BROKER_URL": redis_url,
        "DRAMATIQ_NAMESPACE": namespace,
        "SMTP_URL": smtp.url,
        "PUBLIC_BASE_URL": base,
        "OUTBOX_MIN_BACKOFF_MS": "200",
        "SESSION_COOKIE_SECURE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker")}
    handles = {name: path.open("wb") for name, path in logs.items()}
    processes = [
        subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "run", "--port", str(port), "--no-reload"],
            cwd=ROOT,
            env=env,
            stdout=handles["web"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(BIN / "dramatiq"), "worker", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=handles["worker"],
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        _wait_until_up(base + "/healthz", processes)
        yield base
    finally:
        stop_shape(processes, handles, redis_url, namespace)


def test_subscribe_confirm_and_one_click_through_redis_and_a_worker_process(
    app, production_shape, smtp
) -> None:
    base = production_shape
    status, page = _post(
        base + "/subscribe",
        {"email": "redis@example.se", "topics": "newsletter", "consent": "on", "form_id": "hosted"},
    )
    assert status == 200 and "Check your inbox" in page

    [confirmation] = smtp.wait_for(1, timeout=30)
    confirm_url = next(u for u in text_of(confirmation).split() if "/confirm/" in u)
    assert confirm_url.startswith(base)
    with urllib.request.urlopen(confirm_url, timeout=10) as response:
        assert "Confirm</button>" in response.read().decode()
    status, page = _post(confirm_url, {})
    assert status == 200 and "Subscription confirmed" in page

    welcome = smtp.wait_for(2, timeout=30)[1]
    one_click = str(welcome["List-Unsubscribe"]).split(",")[0].strip("<> ")
    status, _ = _post(one_click, {"List-Unsubscribe": "One-Click"})
    assert status == 200

    with app.app_context():
        from consent.services import check_permissions

        [decision] = check_permissions(["redis@example.se"], "newsletter")
        db.session.remove()
    assert (decision.allowed, decision.reason) == (False, "unsubscribed")
    assert len(smtp.messages) == 2
