"""The change feed under concurrent writers (PostgreSQL): no item missed, none
repeated, although transactions commit out of the order their ids were taken.

Two writer threads record 10,000 items in transactions of 1-25 items each.
Each transaction takes its id first and sleeps a moment between writing its
items and committing, so that a later transaction often commits first: an
id-ordered reader would pass over the earlier one's items for good. Some
transactions roll back; their items must never be served. A reader thread
pages through the feed with random page sizes all the while, and keeps its
cursor only, as a CRM would.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from consent import feed
from crm import changes
from extensions import db

pytestmark = pytest.mark.postgres

TOTAL = 10_000
WRITERS = 2


def _writer(app: Any, number: int, committed: list[int], rolled_back: list[int]) -> None:
    rng = random.Random(number)
    share = TOTAL // WRITERS
    # Contact ids unique per item: one item per (contact, type) per transaction.
    next_contact = number * 10_000_000 + 1
    written = 0
    with app.app_context():
        while written < share:
            size = min(rng.randint(1, 25), share - written)
            # Take the transaction id now, as a use case that writes a contact first does.
            db.session.execute(sa.select(sa.func.pg_current_xact_id()))
            time.sleep(rng.random() * 0.002)
            ids = changes.record(
                changes.DECISIONS_CHANGED, list(range(next_contact, next_contact + size))
            )
            next_contact += size
            time.sleep(rng.random() * 0.004)
            if rng.random() < 0.05:
                db.session.rollback()
                rolled_back.extend(ids)
                continue
            db.session.commit()
            committed.extend(ids)
            written += size
        db.session.remove()


def _reader(app: Any, done: threading.Event, served: list[int]) -> None:
    rng = random.Random(99)
    cursor = None
    with app.app_context():
        while True:
            finished = done.is_set()  # read before the page: the last page comes after it
            page = feed.read(cursor, rng.choice((1, 7, 50, 333, 1000)))
            served.extend(int(item["id"].removeprefix("chg_")) for item in page.items)
            cursor = page.next_cursor or cursor
            if finished and not page.items:
                break
            if not page.items:
                time.sleep(0.001)
        db.session.remove()


def test_concurrent_writers_and_a_reader_miss_and_repeat_nothing(app) -> None:
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip(
                "the concurrent-writers proof needs a server database: runs on the suite's second pass"
            )
    committed: list[int] = []
    rolled_back: list[int] = []
    served: list[int] = []
    done = threading.Event()
    writers = [
        threading.Thread(target=_writer, args=(app, n, committed, rolled_back))
        for n in range(WRITERS)
    ]
    reader = threading.Thread(target=_reader, args=(app, done, served))
    started = time.monotonic()
    reader.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    # Writers are done: whatever the reader reads from now on is the rest.
    _wait_until_settled(app)
    done.set()
    reader.join(timeout=120)
    elapsed = time.monotonic() - started
    assert not reader.is_alive() and not any(w.is_alive() for w in writers)

    assert len(committed) == TOTAL
    assert len(served) == len(set(served)), "an item was served twice"
    assert set(served) == set(committed), (
        f"missed {len(set(committed) - set(served))}, "
        f"served uncommitted {len(set(served) - set(committed))}"
    )
    assert not set(served) & set(rolled_back)
    # The race was real: items were served out of id order, which a reader
    # paging by id alone would have skipped.
    assert any(later < earlier for earlier, later in itertools.pairwise(served))
    assert elapsed < 60, f"took {elapsed:.0f} s"


def _wait_until_settled(app: Any) -> None:
    with app.app_context():
        for _ in range(300):
            pending = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(changes.Change)
                .where(changes.Change.txid >= feed._SETTLED)
            )
            db.session.rollback()
            if not pending:
                return
            time.sleep(0.1)


def _served_now(app: Any) -> list[int]:
    with app.app_context():
        page = feed.read(None, 1000)
        return [int(item["id"].removeprefix("chg_")) for item in page.items]


def _record_one(app: Any, contact_id: int) -> int:
    with app.app_context():
        (change_id,) = changes.record(changes.CONTACT_CREATED, [contact_id])
        db.session.commit()
        return change_id


def test_only_a_writing_transaction_of_this_database_holds_the_feed_back(app) -> None:
    """A transaction left open in another database on the same server (a
    report, another service) does not delay the feed; one of this database
    delays it until it ends, and then nothing it held back is missing."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("transaction ids are a server database's: runs on the suite's second pass")
        url = db.engine.url
    elsewhere = sa.create_engine(url.set(database="postgres"))
    here = sa.create_engine(url)
    try:
        with elsewhere.connect() as other:
            other.execute(sa.select(sa.func.pg_current_xact_id()))  # open, with an id
            first = _record_one(app, 1)
            _wait_until_settled(app)
            assert _served_now(app) == [first]
            with here.connect() as mine:
                mine.execute(sa.select(sa.func.pg_current_xact_id()))
                second = _record_one(app, 2)
                time.sleep(0.2)
                assert _served_now(app) == [first]  # held back, not skipped
            _wait_until_settled(app)
            assert _served_now(app) == [first, second]
            other.rollback()
    finally:
        elsewhere.dispose()
        here.dispose()
