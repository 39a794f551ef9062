"""An import as production runs it (issue 22 item 4): the web process stores the
file and answers 202 at once, with no worker running; a separate `dramatiq
worker` process, started afterwards and reaching the web process only through
the database and Redis (as on another host), imports it; the API shows the
progress and the report."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import count_rows
from tests.reliability.production import OwnRedis, Production

# Real processes (production.py): the long job, `make test-long` (docs/testing.md).
pytestmark = [pytest.mark.redis, pytest.mark.long]

ROWS = 25_000


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="list.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + file
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def request(base: str, token: str, path: str, body: bytes | None = None, boundary: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    call = urllib.request.Request(base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_the_web_process_queues_the_file_and_a_worker_process_imports_it(
    app, database_url, smtp, token_for, tmp_path: Path
) -> None:
    content = (
        "email,name,company,country\n"
        + "".join(f"p{i:06d}@kund.se,Person {i},Kund AB,SE\n" for i in range(ROWS))
    ).encode()
    redis = OwnRedis(tmp_path)
    redis.start()
    production = Production(database_url, redis.url(0), smtp.url, tmp_path)
    token = token_for("marketing")
    try:
        production.start_web()
        body, boundary = multipart({"basis": "customer", "source": "CRM 2026"}, content)
        started = time.monotonic()
        status, headers, queued = request(production.base, token, "/api/v1/imports", body, boundary)
        answered_in = time.monotonic() - started
        assert status == 202, queued
        assert (queued["status"], queued["rows_total"]) == ("queued", ROWS)
        # No worker runs yet: the request imported nothing, only stored the file.
        assert count_rows(app)["contact"] == 0
        assert count_rows(app)["import_upload_chunk"] >= 1

        production.start_workers(processes=1, threads=1)
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            _, _, batch = request(production.base, token, headers["Location"])
            seen.append((batch["status"], batch["rows_done"]))
            if batch["status"] in ("done", "failed"):
                break
            time.sleep(0.2)
    finally:
        production.stop()
        redis.stop()

    assert (batch["status"], batch["created"], batch["rows_done"], batch["rows_total"]) == (
        "done",
        ROWS,
        ROWS,
        ROWS,
    ), production.log("worker")
    assert count_rows(app)["contact"] == ROWS
    assert count_rows(app)["import_upload_chunk"] == 0
    # The rows read only ever grow, from the queued batch to the report.
    done = [rows for _, rows in seen]
    assert done == sorted(done)
    assert answered_in < 30
