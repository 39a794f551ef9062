"""Campaign audience at scale: ``consent.audience.audience_size`` against one raw
SQL count over the same tables.

Data (built in SQL, on the database server): ``CONTACTS`` contacts in Sweden;
60% consented to the topic by email, 20% on an industry list (legitimate
interest, topic ``*``), 10% consented but objected to all marketing, 10% with
nothing; 1% of all addresses suppressed. The topic is ``product-updates``
(consent and legitimate interest both count). The baseline is one
``SELECT count(*)`` joining contact and permission_state for the consented rows.
Memory is the growth of this process's peak RSS during the timed call.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, database_version

TITLE = "Campaign audience (issue 7)"
TOPIC = "product-updates"
STAMP = "2025-06-01 10:00:00.000000"


def _size(ctx: Context) -> int:
    if ctx.smoke:
        return 1000
    return int(os.environ.get("BENCH_AUDIENCE_CONTACTS", 1_000_000))


def _numbers(conn: Any, n: int) -> str:
    """A FROM clause yielding g = 1..n on either database."""
    if conn.dialect.name == "postgresql":
        return f"generate_series(1, {n}) AS s(g)"
    return (
        f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
        "SELECT g FROM s) AS s"
    )


def _load(conn: Any, n: int) -> None:
    postgres = conn.dialect.name == "postgresql"
    stamp = f"timestamptz '{STAMP}+00'" if postgres else f"'{STAMP}'"
    pad = "lpad(g::text, 64, '0')" if postgres else "printf('%064d', g)"
    numbers = _numbers(conn, n)
    conn.execute(
        sa.text(
            "INSERT INTO contact (id, email, address_hash, name, country, language, created_at, updated_at) "
            f"SELECT g, 'a' || g || '@bench.example', {pad}, 'Contact ' || g, 'SE', 'en', "
            f"{stamp}, {stamp} FROM {numbers}"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO permission_state (contact_id, topic, channel, consent_since) "
            f"SELECT g, '{TOPIC}', 'email', {stamp} FROM {numbers} WHERE g % 10 < 6 OR g % 10 = 8"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO permission_state (contact_id, topic, channel, industry_list_since, objected_since) "
            f"SELECT g, '*', '*', CASE WHEN g % 10 IN (6, 7) THEN {stamp} END, "
            f"CASE WHEN g % 10 = 8 THEN {stamp} END FROM {numbers} WHERE g % 10 IN (6, 7, 8)"
        )
    )
    conn.execute(
        sa.text(
            f"INSERT INTO suppression (address_hash, reason, created_at) "
            f"SELECT {pad}, 'bench', {stamp} FROM {numbers} WHERE g % 100 = 1"
        )
    )
    conn.execute(sa.text("ANALYZE"))


BASELINE = (
    "SELECT count(*) FROM contact AS c JOIN permission_state AS p ON p.contact_id = c.id "
    "WHERE p.topic = :topic AND p.channel IN ('*', 'email') AND p.consent_since IS NOT NULL"
)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(ctx: Context) -> list[str]:
    from datetime import UTC, datetime

    from flask_migrate import upgrade

    from bench.retention import _app
    from consent.audience import audience_size
    from consent.topics import current_policy
    from extensions import db

    n = _size(ctx)
    lines = [
        f"{n:,} contacts (60% consented to `{TOPIC}` by email, 20% on an industry list, "
        "10% consented but objected, 10% nothing; 1% of addresses suppressed). "
        "`audience_size` is the service's set-based audience query (every rule of the "
        "policy); the baseline is one raw `SELECT count(*)` joining contact and "
        "permission_state for consented rows. Memory: growth of the process's peak RSS "
        "during the call.",
        "",
        "| database | audience_size (median) | contacts in audience | raw count (median) | rows counted | ratio | bar (<= 3x, memory flat) | peak RSS growth |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
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
                policy = current_policy()
                topic = policy.topic(TOPIC)
                at = datetime(2026, 1, 1, tzinfo=UTC)
                db.session.remove()

                def service(
                    topic: Any = topic, at: Any = at, policy: Any = policy
                ) -> dict[str, Any]:
                    before = _peak_mib()
                    size = audience_size(topic, "email", at, policy)
                    db.session.remove()
                    return {"count": size, "rss": _peak_mib() - before}

                def raw() -> dict[str, Any]:
                    before = _peak_mib()
                    with db.engine.connect() as conn:
                        count = conn.execute(sa.text(BASELINE), {"topic": TOPIC}).scalar()
                    return {"count": count, "rss": _peak_mib() - before}

                raw()  # warm the cache for both alike
                taken = probe.measure_in_turns({"raw count": raw, "audience_size": service})
                base, mine = taken["raw count"], taken["audience_size"]
                db.engine.dispose()
        ratio = mine.ratio_to(base)
        met = ratio <= 3 and mine.detail("rss", max) < 50
        lines.append(
            f"| {str(version).split(' on ')[0].split(' (')[0]} | {mine.median:.2f} s "
            f"| {mine.detail('count'):,} | {base.median:.2f} s | {base.detail('count'):,} "
            f"| {ratio:.2f}x | {'met' if met else '**not met**'} "
            f"| {mine.detail('rss', max):.1f} MiB |"
        )
    lines += [
        "",
        "Expected audience: every consented contact not suppressed and not objected, "
        "plus the industry-list contacts not suppressed (about 79% of all contacts).",
    ]
    return lines
