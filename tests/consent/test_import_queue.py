"""Imports off the request (issue 22 item 4): the API and the staff page store the
file and answer at once; a dramatiq worker imports it; progress and the report
are read from the batch."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from consent import imports
from consent.imports.batches import LEASE
from consent.models import ImportBatch
from extensions import broker, db
from kernel.access import CLI_ACTOR
from kernel.errors import Conflict
from tests.conftest import count_rows, finish_imports
from tests.staff.helpers import client_as

HEADER = "email,name,company,country,language\n"
ROWS = "".join(f"p{i}@kund.se,Person {i},Kund AB,SE,sv\n" for i in range(25))
# Blank lines are not rows: the count made at upload leaves them out.
FILE = (HEADER + ROWS + "\n  \n").encode()


def post(api: Any, content: bytes = FILE, **form: str) -> Any:
    data: dict[str, Any] = {"basis": "customer", "source": "crm-export", **form}
    data["file"] = (io.BytesIO(content), "list.csv")
    return api.client.post(
        "/api/v1/imports", headers=api.headers, data=data, content_type="multipart/form-data"
    )


def queued_messages() -> int:
    return broker.queues["imports"].qsize()  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(autouse=True)
def _empty_queue() -> Any:
    broker.flush("imports")
    yield
    broker.flush("imports")


def test_the_api_answers_202_with_the_batch_at_once_and_the_worker_imports(
    app, api_as, import_worker
) -> None:
    marketing = api_as("marketing")
    response = post(marketing)
    assert response.status_code == 202, response.json
    body = response.json
    assert (body["status"], body["rows_done"], body["rows_total"]) in {
        ("queued", 0, 25),
        ("running", 0, 25),
        ("done", 25, 25),
    }
    assert response.headers["Location"] == f"/api/v1/imports/{body['batch_id']}"
    assert body["id"] == body["batch_id"]

    finish_imports()
    done = marketing.get(response.headers["Location"]).json
    assert (done["status"], done["rows_done"], done["rows_total"], done["created"]) == (
        "done",
        25,
        25,
        25,
    )
    assert done["finished_at"] is not None and done["file_sha256"]
    # The stored file is personal data: gone once the batch has run.
    assert count_rows(app)["import_upload_chunk"] == 0


def test_nothing_is_imported_in_the_request_only_stored_for_the_worker(app, api_as) -> None:
    """No worker runs here: the request stores the file and queues one job."""
    marketing = api_as("marketing")
    response = post(marketing)
    assert response.status_code == 202, response.json
    rows = count_rows(app)
    assert rows["contact"] == 0 and rows["import_upload_chunk"] == 1
    assert queued_messages() == 1
    progress = marketing.get(response.headers["Location"]).json
    assert (progress["status"], progress["rows_done"], progress["rows_total"]) == (
        "queued",
        0,
        25,
    )
    assert progress["rejections"] == [] and progress["finished_at"] is None


def test_a_file_is_stored_in_chunks_and_read_back_whole(app, api_as, monkeypatch) -> None:
    monkeypatch.setattr("consent.imports.uploads.UPLOAD_CHUNK_BYTES", 16 * 1024)
    marketing = api_as("marketing")
    rows = [f"person{i:06d}@kund.se,Person Number {i},Kund AB,SE,sv\n" for i in range(3_000)]
    content = (HEADER + "".join(rows)).encode()
    response = post(marketing, content)
    assert response.status_code == 202
    assert count_rows(app)["import_upload_chunk"] == -(-len(content) // (16 * 1024))
    with app.app_context():
        imports.run_queued_import(response.json["batch_id"])
        db.session.remove()
    done = marketing.get(response.headers["Location"]).json
    assert (done["status"], done["created"], done["rejected"]) == ("done", 3_000, 0)
    assert done["file_sha256"] == hashlib.sha256(content).hexdigest()
    assert count_rows(app)["import_upload_chunk"] == 0


def test_a_file_refused_whole_is_422_and_nothing_is_stored_or_queued(app, api_as) -> None:
    marketing = api_as("marketing")
    before = count_rows(app)
    refused = post(marketing, b"name,company\nAnna,Kund AB\n")
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "invalid_file")
    assert post(marketing, FILE, preset="nosuchcrm").status_code == 422
    assert count_rows(app) == before
    assert queued_messages() == 0


def test_a_broker_that_is_down_is_503_and_keeps_nothing(app, api_as, monkeypatch) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("consent.imports.batches.send_job", broker_down)
    marketing = api_as("marketing")
    before = count_rows(app)
    response = post(marketing)
    assert response.status_code == 503
    assert "redis" not in response.get_data(as_text=True)
    assert count_rows(app) == before


def test_the_job_is_safe_to_run_twice_and_resumes_a_batch_cut_off(app, api_as) -> None:
    marketing = api_as("marketing")
    batch_id = post(marketing).json["batch_id"]
    with app.app_context():
        imports.run_queued_import(batch_id)
        first = imports.report_of(batch_id)
        imports.run_queued_import(batch_id)  # delivered again after it finished: nothing
        again = imports.report_of(batch_id)
        db.session.remove()
    assert (first.status, first.created) == ("done", 25)
    assert (again.created, again.finished_at) == (25, first.finished_at)

    # A worker killed mid-file leaves the batch running with its file: the
    # message delivered again reads it whole; imported rows come back unchanged.
    second = post(marketing).json["batch_id"]
    with app.app_context():
        from consent.models import ImportBatch

        db.session.get(ImportBatch, second).status = "running"
        db.session.commit()
        imports.run_queued_import(second)
        resumed = imports.report_of(second)
        db.session.remove()
    assert (resumed.status, resumed.rows, resumed.unchanged, resumed.created) == (
        "done",
        25,
        25,
        0,
    )
    assert count_rows(app)["contact"] == 25


def test_the_staff_page_shows_a_progress_bar_that_reloads_itself_then_the_report(app) -> None:
    client = client_as(app, "marketing")
    response = client.post(
        "/staff/imports",
        data={"basis": "customer", "source": "CRM", "file": (io.BytesIO(FILE), "list.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    waiting = client.get(response.location)
    page = waiting.get_data(as_text=True)
    assert "File received: the import runs in the background." in page
    assert '<meta http-equiv="refresh" content="2">' in page
    assert '<progress id="import-progress"' in page
    # The strict CSP: no inline script carries the bar.
    assert "<script" not in page
    assert "'unsafe-inline'" not in waiting.headers["Content-Security-Policy"]

    batch_id = int(response.location.rsplit("/", 1)[1])
    with app.app_context():
        from consent.models import ImportBatch

        db.session.get(ImportBatch, batch_id).status = "running"
        db.session.commit()
        db.session.remove()
    running = client.get(response.location).get_data(as_text=True)
    assert re.search(r'<progress id="import-progress"[^>]* max="25" value="0">', running)
    assert "0 of about 25 rows read." in running

    with app.app_context():
        imports.run_queued_import(batch_id)
        db.session.remove()
    done = client.get(response.location).get_data(as_text=True)
    assert 'http-equiv="refresh"' not in done and "<progress" not in done
    assert '<dd class="created">25</dd>' in done and '<dd class="status">done</dd>' in done


def test_a_batch_whose_job_was_lost_is_run_from_the_command_line(app, api_as) -> None:
    """A Redis emptied before any worker took the job leaves the batch queued:
    ``flask contacts run-import`` imports it in the operator's own process."""
    batch_id = post(api_as("marketing")).json["batch_id"]
    broker.flush("imports")  # the message is gone
    result = app.test_cli_runner().invoke(args=["contacts", "run-import", str(batch_id)])
    assert result.exit_code == 0, result.output
    assert f"Import batch {batch_id}: done, rows 25, created 25" in result.output
    again = app.test_cli_runner().invoke(args=["contacts", "run-import", str(batch_id)])
    assert "created 25" in again.output and count_rows(app)["contact"] == 25
    missing = app.test_cli_runner().invoke(args=["contacts", "run-import", "999"])
    assert missing.exit_code == 1 and "No import batch 999" in missing.output


def _batch(app: Any, batch_id: int) -> Any:
    from consent.models import ImportBatch

    with app.app_context():
        batch = db.session.get(ImportBatch, batch_id)
        assert batch is not None
        db.session.expunge(batch)
        db.session.remove()
    return batch


def _set_batch(app: Any, batch_id: int, **values: Any) -> None:
    import sqlalchemy as sa

    from consent.models import ImportBatch

    with app.app_context():
        db.session.execute(
            sa.update(ImportBatch).where(ImportBatch.id == batch_id).values(**values)
        )
        db.session.commit()
        db.session.remove()


def test_a_second_delivery_leaves_a_batch_its_worker_is_importing_alone(app, api_as) -> None:
    from kernel.timestamps import utcnow

    marketing = api_as("marketing")
    batch_id = post(marketing).json["batch_id"]
    # Another worker claimed it a moment ago and is reading the file.
    _set_batch(app, batch_id, status="running", claimed_at=utcnow())
    with app.app_context():
        imports.run_queued_import(batch_id)
        db.session.remove()
    assert (_batch(app, batch_id).status, count_rows(app)["contact"]) == ("running", 0)
    # That worker died: once its lease ran out, a delivery takes the batch over.
    _set_batch(app, batch_id, claimed_at=utcnow() - LEASE - timedelta(seconds=1))
    with app.app_context():
        imports.run_queued_import(batch_id)
        db.session.remove()
    done = _batch(app, batch_id)
    assert (done.status, done.created, count_rows(app)["contact"]) == ("done", 25, 25)


def test_a_worker_whose_batch_was_taken_over_stops_and_leaves_it_to_the_new_one(
    app, api_as, monkeypatch
) -> None:
    from consent.imports import batches

    monkeypatch.setattr(batches, "BATCH_SIZE", 10)
    applied = batches.apply_batch
    chunks = []

    def slow_worker(*args: Any, **kwargs: Any) -> Any:
        chunks.append(1)
        if len(chunks) == 2:
            # Our lease ran out during the first chunk and another worker took over.
            _set_batch(app, batch_id, claimed_at=datetime.now(UTC) + timedelta(seconds=5))
        return applied(*args, **kwargs)

    monkeypatch.setattr(batches, "apply_batch", slow_worker)
    marketing = api_as("marketing")
    batch_id = post(marketing).json["batch_id"]
    with app.app_context():
        imports.run_queued_import(batch_id)
        db.session.remove()
    stopped = _batch(app, batch_id)
    # The first chunk counted, the second rolled back, nothing failed or finished:
    # the batch and its file are the new worker's.
    assert (stopped.status, stopped.rows, stopped.created) == ("running", 10, 10)
    assert stopped.finished_at is None and stopped.error is None
    assert count_rows(app)["contact"] == 10
    assert count_rows(app)["import_upload_chunk"] == 1


def test_the_sweeper_hands_over_again_the_imports_whose_job_was_lost(app, api_as, request) -> None:
    """A Redis restarted empty, or a worker dead after its message was lost: the
    batch's row, not the broker, says what is owed (``flask outbox sweep``, and
    the scheduler's sweeper)."""
    from mailing.outbox import sweep_all

    marketing = api_as("marketing")
    files = [
        (HEADER + "".join(f"b{n}p{i}@kund.se,P,Kund AB,SE,sv\n" for i in range(5))).encode()
        for n in range(4)
    ]
    lost, young, alive, dead = (post(marketing, f).json["batch_id"] for f in files)
    broker.flush("imports")  # every message lost
    now = datetime.now(UTC)
    old = now - LEASE - timedelta(seconds=1)
    _set_batch(app, lost, started_at=old)
    _set_batch(app, alive, status="running", claimed_at=now)
    _set_batch(app, dead, status="running", claimed_at=old)
    # The workers start now, as after the restart that lost the messages.
    import_worker = request.getfixturevalue("import_worker")
    with app.app_context():
        swept = sweep_all()
        db.session.remove()
    assert swept.imports == [lost, dead]
    import_worker()
    status = {b: _batch(app, b).status for b in (lost, young, alive, dead)}
    assert status == {lost: "done", young: "queued", alive: "running", dead: "done"}
    assert (_batch(app, lost).created, _batch(app, dead).created) == (5, 5)
    with app.app_context():
        # Handed over at most once per lease while it waits.
        assert imports.resend_lost_imports() == []
        # A broker that lost its stored messages: every queued batch at once.
        assert imports.resend_lost_imports(broker_emptied=True) == [young]
        db.session.remove()
    import_worker()
    assert _batch(app, young).status == "done"


def test_an_import_run_here_holds_its_lease_so_the_sweeper_leaves_it(app) -> None:
    """``flask import`` imports in its own process: no job of it is lost."""
    seen = []

    def progress(read: int) -> None:
        seen.append(imports.resend_lost_imports(broker_emptied=True))

    with app.app_context():
        report = imports.import_contacts(
            CLI_ACTOR,
            io.BytesIO(FILE),
            basis="customer",
            source="crm-export",
            batch_size=10,
            progress=progress,
        )
        db.session.remove()
    assert seen and all(ids == [] for ids in seen)
    assert (report.status, report.created) == ("done", 25)


def test_a_command_line_import_whose_command_ended_is_marked_failed_not_handed_over(app) -> None:
    """Its file is not stored: no worker could read it, and a worker that
    claimed it would wipe its report and fail on an empty file."""
    stopped = []

    def interrupted(read: int) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C after the first chunk

    with app.app_context():
        with pytest.raises(KeyboardInterrupt):
            imports.import_contacts(
                CLI_ACTOR,
                io.BytesIO(FILE),
                basis="customer",
                source="crm-export",
                batch_size=10,
                progress=interrupted,
            )
        db.session.rollback()
        [batch_id] = db.session.scalars(sa.select(ImportBatch.id)).all()
        db.session.remove()
    assert (_batch(app, batch_id).status, _batch(app, batch_id).created) == ("running", 10)
    with app.app_context():
        # A delivery of a job naming it (or `flask contacts run-import`) leaves it.
        imports.run_queued_import(batch_id)
        stopped.append(imports.resend_lost_imports(broker_emptied=True))
        db.session.remove()
    assert stopped == [[]] and _batch(app, batch_id).status == "running"
    _set_batch(app, batch_id, claimed_at=datetime.now(UTC) - LEASE - timedelta(seconds=1))
    with app.app_context():
        # Its lease ran out: still no delivery takes it (it has no file to read).
        imports.run_queued_import(batch_id)
        assert (_batch(app, batch_id).status, _batch(app, batch_id).created) == ("running", 10)
        assert imports.resend_lost_imports() == []
        db.session.remove()
    ended = _batch(app, batch_id)
    assert (ended.status, ended.created, ended.rows) == ("failed", 10, 10)
    assert ended.error is not None and ended.error.startswith("Stopped: the command")
    assert queued_messages() == 0


def test_a_command_line_import_that_lost_its_lease_says_so(app) -> None:
    from consent.imports import batches

    def slow(read: int) -> None:
        # A chunk took longer than the lease: the sweeper marked the batch stopped.
        with app.app_context():
            db.session.execute(
                sa.update(ImportBatch).values(claimed_at=datetime.now(UTC) - 2 * LEASE)
            )
            db.session.commit()
            assert batches.resend_lost_imports() == []

    with app.app_context():
        with pytest.raises(Conflict) as refused:
            imports.import_contacts(
                CLI_ACTOR,
                io.BytesIO(FILE),
                basis="customer",
                source="crm-export",
                batch_size=10,
                progress=slow,
            )
        db.session.remove()
    assert refused.value.code == "import_stopped"
    assert "import the file again" in refused.value.message


def test_a_worker_that_lost_its_lease_and_then_fails_leaves_the_batch_to_the_new_one(
    app, api_as, monkeypatch
) -> None:
    from consent.imports import batches

    monkeypatch.setattr(batches, "BATCH_SIZE", 10)
    applied = batches.apply_batch
    chunks = []

    def stalled_then_broken(*args: Any, **kwargs: Any) -> Any:
        chunks.append(1)
        if len(chunks) == 2:
            # Taken over meanwhile, then this worker's chunk fails (a deadlock
            # against the new worker, say).
            _set_batch(app, batch_id, claimed_at=datetime.now(UTC) + timedelta(seconds=5))
            raise RuntimeError("deadlock detected")
        return applied(*args, **kwargs)

    monkeypatch.setattr(batches, "apply_batch", stalled_then_broken)
    batch_id = post(api_as("marketing")).json["batch_id"]
    with app.app_context():
        imports.run_queued_import(batch_id)
        db.session.remove()
    left = _batch(app, batch_id)
    assert (left.status, left.error, left.finished_at) == ("running", None, None)
    assert count_rows(app)["import_upload_chunk"] == 1


def test_a_batch_running_from_before_its_lease_is_left_to_its_worker(app, api_as) -> None:
    """Migration 0045 gives running batches no lease: a worker of the version
    before may still be importing it, and knows nothing of leases."""
    batch_id = post(api_as("marketing")).json["batch_id"]
    _set_batch(app, batch_id, status="running", claimed_at=None)
    with app.app_context():
        assert imports.resend_lost_imports() == []
        assert imports.resend_lost_imports(broker_emptied=True) == []
        db.session.remove()
    assert _batch(app, batch_id).status == "running"


def test_an_import_out_of_time_ends_failed_and_is_not_started_over(
    app, api_as, monkeypatch
) -> None:
    from dramatiq.middleware import TimeLimitExceeded

    from consent import tasks

    batch_id = post(api_as("marketing")).json["batch_id"]
    broker.flush("imports")

    def too_long(batch: int) -> None:
        _set_batch(app, batch, status="running", claimed_at=datetime.now(UTC))
        raise TimeLimitExceeded()

    monkeypatch.setattr(imports, "run_queued_import", too_long)
    with app.app_context(), pytest.raises(TimeLimitExceeded):
        tasks.run_import(batch_id)
    stopped = _batch(app, batch_id)
    assert stopped.status == "failed" and "time limit (6 hours)" in (stopped.error or "")
    assert count_rows(app)["import_upload_chunk"] == 0
    _set_batch(app, batch_id, claimed_at=datetime.now(UTC) - 2 * LEASE)
    with app.app_context():
        assert imports.resend_lost_imports(broker_emptied=True) == []
        db.session.remove()


def test_a_queued_batch_gains_a_duplicate_only_each_time_its_wait_doubles(app, api_as) -> None:
    """Waiting behind a six-hour job, it is handed over again at 5, 10, 20,
    40 ... minutes, not every sweep: the queue does not fill with copies."""
    batch_id = post(api_as("marketing")).json["batch_id"]
    broker.flush("imports")
    now = datetime.now(UTC)
    minute = timedelta(minutes=1)
    # (uploaded, last handed over) -> handed over again now?
    for uploaded, last, again in [
        (4 * minute, None, False),
        (6 * minute, None, True),
        (12 * minute, 6 * minute, True),  # handed over at 6, waited 6 since: due
        (15 * minute, 6 * minute, False),  # handed over at 9, waited 6 since: not yet
        (100 * minute, 50 * minute, True),
        (100 * minute, 45 * minute, False),
    ]:
        _set_batch(
            app,
            batch_id,
            status="queued",
            started_at=now - uploaded,
            claimed_at=None if last is None else now - last,
        )
        with app.app_context():
            assert (imports.resend_lost_imports() == [batch_id]) is again, (uploaded, last)
            db.session.remove()
