"""The change feed at scale: reading 1,000,000 items through ``consent.feed.read``
against a bare keyset scan of the same table.

Data (built in SQL, on the database server): ``CHANGES`` items over
``CHANGES / 10`` contacts, nine in ten of them live (a tenth of those with a
consent in the projection, half with a HubSpot id) and one in ten gone. Per
ten items: four ``contact.decisions_changed``, two ``contact.created``, two
``contact.updated``, one ``activities.purged`` and one ``contact.purged``
tombstone of a gone contact. The reader starts without a cursor and pages
with ``limit=1000`` until the end, rendering every item as the API does
(current decisions and fields, tombstones). The baseline is the same keyset
walk as raw SQL (``WHERE (txid, id) > cursor ORDER BY txid, id LIMIT 1000``)
fetching the rows and rendering nothing.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, database_version

TITLE = "Change feed read rate (issue 20)"
PAGE = 1000
STAMP = "2026-06-01 10:00:00.000000"


def _size(ctx: Context) -> int:
    if ctx.smoke:
        return 2_000
    return int(os.environ.get("BENCH_FEED_CHANGES", 1_000_000))


def _numbers(conn: Any, n: int) -> str:
    if conn.dialect.name == "postgresql":
        return f"generate_series(1, {n}) AS s(g)"
    return (
        f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
        "SELECT g FROM s) AS s"
    )


def _load(conn: Any, n: int) -> None:
    postgres = conn.dialect.name == "postgresql"
    contacts = max(n // 10, 10)
    live = contacts * 9 // 10
    stamp = f"timestamptz '{STAMP}+00'" if postgres else f"'{STAMP}'"
    pad = "lpad(g::text, 64, '0')" if postgres else "printf('%064d', g)"
    conn.execute(
        sa.text(
            "INSERT INTO contact (id, email, address_hash, name, country, language, created_at, updated_at) "
            f"SELECT g, 'a' || g || '@bench.example', {pad}, 'Contact ' || g, 'SE', 'en', "
            f"{stamp}, {stamp} FROM {_numbers(conn, live)}"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO permission_state (contact_id, topic, channel, consent_since) "
            f"SELECT g, 'newsletter', 'email', {stamp} FROM {_numbers(conn, live)} WHERE g % 10 = 0"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO external_id (owner_type, owner_id, system, value) "
            f"SELECT 'contact', g, 'hubspot', 'hs-' || g FROM {_numbers(conn, live)} WHERE g % 2 = 0"
        )
    )
    txid = "pg_current_xact_id()::text::bigint" if postgres else "0"
    gone = contacts - live
    # The item's contact: a live one for nine kinds in ten, a gone one for the tombstones.
    contact = f"CASE WHEN g % 10 = 9 THEN {live} + 1 + (g % {gone}) ELSE 1 + (g % {live}) END"
    kind = (
        "CASE WHEN g % 10 < 4 THEN 'contact.decisions_changed' "
        "WHEN g % 10 < 6 THEN 'contact.created' WHEN g % 10 < 8 THEN 'contact.updated' "
        "WHEN g % 10 = 8 THEN 'activities.purged' ELSE 'contact.purged' END"
    )
    data = (
        'CASE WHEN g % 10 IN (6, 7) THEN \'{"fields": ["name"]}\' '
        'WHEN g % 10 = 8 THEN \'{"rule": "old-calls", "action": "deleted", "count": 2}\' '
        'WHEN g % 10 = 9 THEN \'{"rule": "crm-contacts", "external_ids": {"hubspot": "hs-gone"}}\' '
        "END"
    )
    if postgres:
        data = f"({data})::json"
    conn.execute(
        sa.text(
            "INSERT INTO change (id, txid, type, contact_id, occurred_at, data) "
            f"SELECT g, {txid}, {kind}, {contact}, {stamp}, {data} FROM {_numbers(conn, n)}"
        )
    )
    if postgres:
        conn.execute(sa.text("SELECT setval('change_id_seq', :n)"), {"n": n})
    conn.execute(sa.text("ANALYZE"))


# The bare keyset scan, as each database seeks its (txid, id) index best (on
# SQLite txid is always 0 and the feed pages by id, see consent.feed._served).
BARE = {
    "postgresql": (
        "SELECT id, txid, type, contact_id, occurred_at, data FROM change "
        "WHERE (txid, id) > (:txid, :id) ORDER BY txid, id LIMIT :limit"
    ),
    "sqlite": (
        "SELECT id, txid, type, contact_id, occurred_at, data FROM change "
        "WHERE id > :id ORDER BY id LIMIT :limit"
    ),
}


def run(ctx: Context) -> list[str]:
    from flask_migrate import upgrade

    from bench.retention import _app
    from consent import feed
    from extensions import db

    n = _size(ctx)
    lines = [
        f"{n:,} items over {max(n // 10, 10):,} contacts (nine in ten live, a tenth of them "
        "with a consent, half with a HubSpot id; one in ten gone). Per ten items: four "
        "`contact.decisions_changed`, two `contact.created`, two `contact.updated`, one "
        "`activities.purged`, one `contact.purged` tombstone. The feed is "
        "`consent.feed.read` from the start to the end, `limit=1000`, rendering every item "
        "as `GET /api/v1/changes` does (current decisions through `DecisionSchema`, "
        "current fields, external ids, tombstones); the baseline is the bare keyset scan "
        "of the same table, same order and page size, rendering nothing.",
        "",
        "| database | feed read (median) | items/s | bare keyset scan (median) | rows/s | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for root in ctx.databases():
        probe = ctx.on(root)
        with probe.fresh_database() as url:
            app = _app(url)
            with app.app_context():
                upgrade(revision="heads")
                with db.engine.begin() as conn:
                    _load(conn, n)
                version = database_version()
                db.session.remove()

                def read_feed() -> dict[str, Any]:
                    served, cursor = 0, None
                    while True:
                        page = feed.read(cursor, PAGE)
                        served += len(page.items)
                        cursor = page.next_cursor
                        if not page.has_more:
                            break
                    db.session.remove()
                    return {"count": served}

                def bare() -> dict[str, Any]:
                    served, position = 0, (-1, 0)
                    with db.engine.connect() as conn:
                        while True:
                            rows = conn.execute(
                                sa.text(BARE[conn.dialect.name]),
                                {"txid": position[0], "id": position[1], "limit": PAGE},
                            ).all()
                            if not rows:
                                break
                            served += len(rows)
                            position = (rows[-1].txid, rows[-1].id)
                    return {"count": served}

                taken = probe.measure_in_turns({"bare": bare, "feed": read_feed})
                base, mine = taken["bare"], taken["feed"]
                db.engine.dispose()
        assert mine.detail("count") == base.detail("count") == n, "every item read once"
        lines.append(
            f"| {str(version).split(' on ')[0].split(' (')[0]} | {mine.median:.2f} s "
            f"| {n / mine.median:,.0f} | {base.median:.2f} s | {n / base.median:,.0f} "
            f"| {mine.ratio_to(base):.1f}x |"
        )
    return lines
