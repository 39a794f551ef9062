"""Observability in the production shape: gunicorn with two worker processes and a
``dramatiq worker`` process on a real Redis, sharing ``PROMETHEUS_MULTIPROC_DIR``.

One signup carries its ``X-Request-ID`` from gunicorn's JSON request line to the
worker's JSON job line; ``/metrics`` asks for ``METRICS_TOKEN`` and sums the
counters of every process, the worker's included (docs/operations.md)."""

from __future__ import annotations

import json
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
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_CONFIG
from tests.mailing.conftest import free_port
from tests.mailing.test_redis_worker import _wait_until_up, stop_shape

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "metrics-token-for-the-test-0123456789"

pytestmark = pytest.mark.redis


class Shape:
    def __init__(self, base: str, logs: dict[str, Path]) -> None:
        self.base = base
        self.logs = logs

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        lines = []
        for raw in self.logs[name].read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        return lines

    def wait_for_line(self, name: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.json_lines(name):
                if all(line.get(k) == v for k, v in fields.items()):
                    return line
            time.sleep(0.2)
        raise AssertionError(f"no {name} line with {fields}: {self.logs[name].read_text()[-3000:]}")

    def metrics(self, token: str | None = TOKEN) -> tuple[int, str]:
        request = urllib.request.Request(self.base + "/metrics")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def _post(url: str, data: dict[str, str], request_id: str) -> int:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("X-Request-ID", request_id)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Request-ID"] == request_id
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _sample(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def observed_shape(
    app: Any, database_url: str, redis_url: str, smtp: Any, tmp_path: Path
) -> Iterator[Shape]:

    namespace = f"consent-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
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
        "SESSION_COOKIE_SECURE": "0",
        "PYTHONUNBUFFERED": "1",
        "LOG_FORMAT": "json",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker")}
    handles = {name: path.open("wb") for name, path in logs.items()}
    processes = [
        subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "app:create_app()",
            ],
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
        yield Shape(base, logs)
    finally:
        stop_shape(processes, handles, redis_url, namespace)


def test_a_request_id_reaches_the_worker_and_metrics_sum_every_process(
    observed_shape: Shape, smtp: Any
) -> None:
    shape = observed_shape
    request_id = f"e2e-{uuid.uuid4().hex}"
    status = _post(
        shape.base + "/subscribe",
        {"email": "observed@example.se", "topics": "newsletter", "consent": "on"}
        | {"form_id": "hosted"},
        request_id,
    )
    assert status == 200
    smtp.wait_for(1, timeout=30)

    web = shape.wait_for_line("web", event="request", route="/subscribe", method="POST")
    assert web["request_id"] == request_id and web["status"] == 200
    job = shape.wait_for_line("worker", event="job", actor="deliver_emails")
    assert job["request_id"] == request_id and job["outcome"] == "done"
    assert "observed@example.se" not in shape.logs["web"].read_text()

    assert shape.metrics(token=None)[0] == 401
    assert shape.metrics(token="not-the-token")[0] == 401
    for _ in range(20):
        with urllib.request.urlopen(shape.base + "/subscribe", timeout=10) as response:
            assert response.status == 200
    status, text = shape.metrics()
    assert status == 200
    # Two gunicorn processes answered these; every scrape sums both.
    served = _sample(
        text, "consent_http_requests_total", method="GET", route="/subscribe", status="200"
    )
    assert served == 20
    # Counted in the dramatiq process, read through the shared folder.
    assert _sample(text, "consent_jobs_total", actor="deliver_emails", outcome="done") >= 1
    assert _sample(text, "consent_outbox_deliveries_total", outcome="sent") >= 1
