"""The views of issue 23 at scale: the contact list's first page under each single
filter, its CSV export, and the dashboard, each against bare SQL of the same shape.

Data, built in SQL on the database server (``generate_series`` on PostgreSQL, a
recursive count on SQLite for the smoke run), never through the app:
1,000,000 contacts and ten ledger events per contact (10,000,000; the sizes are
``BENCH_VIEWS_CONTACTS`` and ``BENCH_VIEWS_EVENTS``),
spread as a real list would be:

- contacts: created evenly over five years (ids in creation order), ten
  countries (SE 40%, NO, DK, FI 10% each, DE, GB, NL, FR, PL, US), Swedish or
  English by country, 80% at one of ``CONTACTS / 10`` companies (30% of them
  customers, a tenth of those ended), 70% with a last interaction, 1.5%
  hard-bounced, 30% with an id in HubSpot or Salesforce;
- the projection (``permission_state``): consent to the newsletter 35%,
  product updates 20%, events 15%, surveys 10% (by email; a tenth of those by
  phone too), 5% pending; on the blanket row, an industry-list basis 20%,
  objections 3%, unsubscribes from everything 5%; customers' contacts hold the
  customer basis;
- the ledger (``consent_event``): in time order over the five years, kinds as
  a ledger holds them (requested 30%, confirmed 22%, basis granted 15%,
  bounced 8%, unsubscribed 6%, withdrawn 5%, ...), a fifth from twenty import
  batches (``source_ref = import-batch:<n>``), topics and channels as above;
- 1% of addresses suppressed.

Measured in the same run: each filter's first page as the staff page serves it
(an in-process request by a signed-in admin: server time, no network) against
one bare ``SELECT ... WHERE <that filter> ORDER BY id LIMIT <page>`` (the
list pages by id; the decision filters' bare SQL reads the projection row
alone, where the list asks the policy's whole audience or reason query);
the CSV export's rows per second against a bare fetch of the same columns for
the same rows; the dashboard's full render against the bare SQL of its charts'
shapes run one after another. Bars (issue 23): list page p99 under 100 ms,
dashboard under 1 s of server time.

The list and the export come from ``consent.contact_filters`` and the
``/staff/contacts`` page, the dashboard from ``/staff/dashboard``; a piece not
in this build is reported as such, its baseline still measured.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, database_version

TITLE = "Lists, export and dashboard at scale (issue 23)"
PAGE = 50
START = "2021-01-01 00:00:00"
SPAN_S = 5 * 365 * 86400  # the five years the data is spread over
AT = "2026-01-01 00:00:00"  # "now" for decisions and recency
LIST_BAR_S = 0.100
DASHBOARD_BAR_S = 1.0


def _sizes(ctx: Context) -> tuple[int, int]:
    if ctx.smoke:
        return 1000, 10_000
    contacts = int(os.environ.get("BENCH_VIEWS_CONTACTS", 1_000_000))
    return contacts, int(os.environ.get("BENCH_VIEWS_EVENTS", contacts * 10))


# Generating -------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """The few expressions the generator needs, for either database."""

    postgres: bool

    def numbers(self, n: int) -> str:
        if self.postgres:
            return f"generate_series(1::bigint, {n}) AS s(g)"  # hashes overflow int4
        return (
            f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
            "SELECT g FROM s) AS s"
        )

    def ts(self, seconds: str) -> str:
        """START plus ``seconds`` (an integer expression), as the column type stores it."""
        if self.postgres:
            return f"(timestamptz '{START}+00' + ({seconds}) * interval '1 second')"
        return f"strftime('%Y-%m-%d %H:%M:%S', '{START}', ({seconds}) || ' seconds')"

    def day(self, iso: str) -> str:
        return f"DATE '{iso}'" if self.postgres else f"'{iso}'"

    def pad(self, expr: str) -> str:
        return f"lpad(({expr})::text, 64, '0')" if self.postgres else f"printf('%064d', {expr})"


def _pick(hash_expr: str, choices: list[tuple[int, str]]) -> str:
    """A CASE choosing among ``choices`` (percent, SQL value) by ``hash_expr % 100``."""
    arms, upto = [], 0
    for percent, value in choices[:-1]:
        upto += percent
        arms.append(f"WHEN ({hash_expr}) % 100 < {upto} THEN {value}")
    return f"CASE {' '.join(arms)} ELSE {choices[-1][1]} END"


COUNTRIES = [
    (40, "'SE'"),
    (10, "'NO'"),
    (10, "'DK'"),
    (10, "'FI'"),
    (8, "'DE'"),
    (7, "'GB'"),
    (5, "'NL'"),
    (4, "'FR'"),
    (3, "'PL'"),
    (3, "'US'"),
]
EVENT_KINDS = [
    (30, "'requested'"),
    (22, "'confirmed'"),
    (15, "'basis_granted'"),
    (8, "'bounced'"),
    (6, "'unsubscribed'"),
    (5, "'withdrawn'"),
    (3, "'basis_ended'"),
    (3, "'objected'"),
    (2, "'undeliverable'"),
    (2, "'deliverable'"),
    (2, "'suppressed'"),
    (2, "'restricted'"),
]
TOPICS = [(40, "'newsletter'"), (25, "'product-updates'"), (20, "'events'"), (15, "'surveys'")]
SOURCES = [(40, "'form'"), (20, "'import'"), (20, "'api'"), (15, "'crm-sync'"), (5, "'staff'")]
# (topic, percent of contacts consenting by email): the projection's consent rows.
CONSENTS = [
    ("newsletter", 35, 0),
    ("product-updates", 20, 35),
    ("events", 15, 55),
    ("surveys", 10, 70),
]


def generate(conn: Any, contacts: int, events: int, sort_memory: str = "256MB") -> None:
    """Fill an empty, migrated database. Set-based statements only: a million
    contacts and ten million events in a few minutes on PostgreSQL.
    ``sort_memory`` is the index builds' ``maintenance_work_mem``."""
    d = Dialect(conn.dialect.name == "postgresql")
    rebuild: list[str] = []
    if d.postgres:
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        conn.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{sort_memory}'"))
        # Foreign keys unchecked while filling (every row is made to point at an
        # existing one), indexes built once at the end rather than row by row:
        # together about three times faster than inserting into the live schema.
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        rebuild = _drop_plain_indexes(conn, ("contact", "permission_state", "consent_event"))
    companies = max(contacts // 10, 1)
    h = "(g * 7919)"  # a cheap, well-spread hash of the row number
    nums = d.numbers(companies)
    conn.execute(
        sa.text(
            "INSERT INTO company (id, name, org_number, country, customer_since, "
            "relationship_ended_at, created_at) "
            f"SELECT g, 'Company ' || g, '556' || g, 'SE', "
            f"CASE WHEN {h} % 10 < 3 THEN {d.day('2022-01-01')} END, "
            f"CASE WHEN {h} % 100 < 3 THEN {d.day('2024-06-30')} END, {d.ts('g')} FROM {nums}"
        )
    )
    step = max(SPAN_S // contacts, 1)
    nums = d.numbers(contacts)
    country = _pick(f"{h} / 7", COUNTRIES)
    conn.execute(
        sa.text(
            "INSERT INTO contact (id, email, address_hash, name, company_id, country, language, "
            "last_interaction_at, hard_bounced_at, created_at, updated_at) "
            f"SELECT g, 'c' || g || '@d' || (g % 5000) || '.example', {d.pad('g')}, "
            f"'Contact ' || g, CASE WHEN {h} % 10 < 8 THEN 1 + ({h} / 10) % {companies} END, "
            f"country, CASE WHEN country = 'SE' THEN 'sv' ELSE 'en' END, "
            f"CASE WHEN {h} % 10 < 7 THEN {d.ts(f'g * {step} + ({h} % 31536000)')} END, "
            f"CASE WHEN {h} % 1000 < 15 THEN {d.ts(f'g * {step} + 86400')} END, "
            f"{d.ts(f'g * {step}')}, {d.ts(f'g * {step}')} "
            f"FROM (SELECT g, {country} AS country FROM {nums}) AS numbered"
        )
    )
    for topic, percent, offset in CONSENTS:
        conn.execute(
            sa.text(
                "INSERT INTO permission_state (contact_id, topic, channel, consent_since) "
                f"SELECT g, '{topic}', 'email', {d.ts(f'g * {step} + 3600')} FROM {nums} "
                f"WHERE ({h} / 3 + {offset}) % 100 < {percent}"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO permission_state (contact_id, topic, channel, consent_since) "
                f"SELECT g, '{topic}', 'phone', {d.ts(f'g * {step} + 3600')} FROM {nums} "
                f"WHERE ({h} / 3 + {offset}) % 100 < {percent} AND {h} % 10 = 0"
            )
        )
    conn.execute(
        sa.text(
            "INSERT INTO permission_state (contact_id, topic, channel, pending_since) "
            f"SELECT g, 'newsletter', 'email', {d.ts(f'g * {step}')} FROM {nums} "
            f"WHERE ({h} / 3) % 100 BETWEEN 35 AND 39"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO permission_state (contact_id, topic, channel, industry_list_since, "
            "customer_since, objected_since, unsubscribed_since) "
            f"SELECT g, '*', '*', "
            f"CASE WHEN ({h} / 11) % 100 < 20 THEN {d.ts(f'g * {step}')} END, "
            f"CASE WHEN company.customer_since IS NOT NULL THEN {d.ts(f'g * {step}')} END, "
            f"CASE WHEN ({h} / 13) % 100 < 3 THEN {d.ts(f'g * {step} + 7200')} END, "
            f"CASE WHEN ({h} / 17) % 100 < 5 THEN {d.ts(f'g * {step} + 7200')} END "
            f"FROM {nums} JOIN contact ON contact.id = g "
            "LEFT JOIN company ON company.id = contact.company_id "
            f"WHERE ({h} / 11) % 100 < 20 OR company.customer_since IS NOT NULL "
            f"OR ({h} / 13) % 100 < 3 OR ({h} / 17) % 100 < 5"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO external_id (owner_type, owner_id, system, value) "
            f"SELECT 'contact', g, CASE WHEN g % 2 = 0 THEN 'hubspot' ELSE 'salesforce' END, "
            f"'x' || g FROM {nums} WHERE {h} % 10 < 3"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO suppression (address_hash, reason, created_at) "
            f"SELECT {d.pad('g')}, 'bench', {d.ts('g')} FROM {nums} WHERE {h} % 100 = 1"
        )
    )
    # The ledger: in time order (ids follow occurred_at), each event at a
    # contact scattered over the whole list.
    each = max(SPAN_S // events, 1)
    e = "(g * 104729)"
    contact = f"(1 + (g * 7919) % {contacts})"
    kind = _pick(f"{e} / 3", EVENT_KINDS)
    conn.execute(
        sa.text(
            "INSERT INTO consent_event (contact_id, kind, topic, channel, basis, interest_kind, "
            "occurred_at, recorded_at, source, source_ref, recorded_by, policy_version, language) "
            f"SELECT {contact}, kind, "
            f"CASE WHEN kind IN ('requested', 'confirmed', 'withdrawn') THEN {_pick(f'{e} / 5', TOPICS)} "
            "ELSE '*' END, "
            f"CASE WHEN {e} % 10 = 0 THEN 'phone' WHEN kind IN ('requested', 'confirmed') "
            "THEN 'email' ELSE '*' END, "
            "CASE WHEN kind IN ('requested', 'confirmed') THEN 'consent' "
            "WHEN kind = 'basis_granted' THEN 'legitimate_interest' END, "
            f"CASE WHEN kind = 'basis_granted' THEN CASE WHEN {e} % 3 = 0 THEN 'customer' "
            "ELSE 'industry_list' END END, "
            f"{d.ts(f'g * {each}')}, {d.ts(f'g * {each}')}, source, "
            f"CASE WHEN source = 'import' THEN 'import-batch:' || (1 + {e} % 20) END, "
            "'bench', '1.0', 'sv' "
            f"FROM (SELECT g, {kind} AS kind, {_pick(f'{e} / 7', SOURCES)} AS source "
            f"FROM {d.numbers(events)}) AS numbered"
        )
    )
    for ddl in rebuild:
        conn.execute(sa.text(ddl))
    if d.postgres:
        # The ids above were given, not drawn: the next row the app adds must not collide.
        for table in ("company", "contact"):
            conn.execute(
                sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {contacts})")
            )
    conn.execute(sa.text("ANALYZE"))


def _drop_plain_indexes(conn: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop the indexes of ``tables`` that back no constraint; return their DDL."""
    rows = conn.execute(
        sa.text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.schemaname = current_schema() AND i.tablename = ANY(:tables) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = to_regclass(quote_ident(i.indexname)))"
        ),
        {"tables": list(tables)},
    ).all()
    for name, _ddl in rows:
        conn.execute(sa.text(f'DROP INDEX "{name}"'))
    return [ddl for _name, ddl in rows]


# The bare SQL baselines -----------------------------------------------------------------

# Each single filter the list offers: its ``ContactFilter`` fields and the bare
# SQL condition of the same shape on ``contact c`` (dates are AT-relative).
FILTERS: dict[str, tuple[dict[str, Any], str]] = {
    "topic (newsletter, email, allowed)": (
        {"topic": "newsletter", "channel": "email", "decision": "allowed"},
        "EXISTS (SELECT 1 FROM permission_state p WHERE p.contact_id = c.id "
        "AND p.topic = 'newsletter' AND p.channel = 'email' AND p.consent_since IS NOT NULL)",
    ),
    "decision: objection": (
        {"topic": "newsletter", "channel": "email", "decision": "objection"},
        "EXISTS (SELECT 1 FROM permission_state p WHERE p.contact_id = c.id "
        "AND p.topic = '*' AND p.objected_since IS NOT NULL)",
    ),
    "basis: legitimate interest": (
        {"basis": "legitimate_interest"},
        "EXISTS (SELECT 1 FROM permission_state p WHERE p.contact_id = c.id "
        "AND p.topic = '*' AND (p.industry_list_since IS NOT NULL OR p.customer_since IS NOT NULL))",
    ),
    "basis kind: industry list": (
        {"basis_kind": "industry_list"},
        "EXISTS (SELECT 1 FROM permission_state p WHERE p.contact_id = c.id "
        "AND p.topic = '*' AND p.industry_list_since IS NOT NULL)",
    ),
    "country: NO": ({"country": "NO"}, "c.country = 'NO'"),
    "language: en": ({"language": "en"}, "c.language = 'en'"),
    "company (name prefix)": (
        {"company": "Company 4242"},
        "c.company_id IN (SELECT k.id FROM company k WHERE lower(k.name) LIKE 'company 4242%')",
    ),
    "customer": (
        {"is_customer": True},
        "EXISTS (SELECT 1 FROM company k WHERE k.id = c.company_id "
        "AND k.customer_since IS NOT NULL AND k.relationship_ended_at IS NULL)",
    ),
    "source: import": (
        {"source": "import"},
        "EXISTS (SELECT 1 FROM consent_event e WHERE e.contact_id = c.id AND e.source = 'import')",
    ),
    "import batch": (
        {"import_batch_id": 7},
        "EXISTS (SELECT 1 FROM consent_event e WHERE e.contact_id = c.id "
        "AND e.source_ref = 'import-batch:7')",
    ),
    "created in 2023": (
        {"created_from": "2023-01-01", "created_to": "2023-12-31"},
        "c.created_at >= '2023-01-01' AND c.created_at < '2024-01-01'",
    ),
    "last interaction in 2025": (
        {"last_interaction_from": "2025-01-01"},
        "c.last_interaction_at >= '2025-01-01'",
    ),
    "deliverability: bounced": ({"deliverability": "bounced"}, "c.hard_bounced_at IS NOT NULL"),
    "active within 90 days": (
        {"active_within_days": 90},
        "c.last_interaction_at >= '2025-10-03'",
    ),
    "external system: hubspot": (
        {"external_system": "hubspot"},
        "EXISTS (SELECT 1 FROM external_id x WHERE x.owner_type = 'contact' "
        "AND x.owner_id = c.id AND x.system = 'hubspot')",
    ),
}
LIST_COLUMNS = "c.id, c.email, c.name, c.country, c.language, c.company_id, c.created_at, c.last_interaction_at"
EXPORT_FILTER = "country: NO"


def _bare_page(where: str) -> str:
    return f"SELECT {LIST_COLUMNS} FROM contact c WHERE {where} ORDER BY c.id LIMIT {PAGE}"


# The shapes the dashboard draws (issue 23 item 3), as bare SQL, one after another.
DASHBOARD_BASELINE = [
    # Reachable audience per topic and channel (a count over the projection).
    "SELECT topic, channel, count(*) FROM permission_state WHERE consent_since IS NOT NULL "
    "GROUP BY topic, channel",
    "SELECT count(*) FILTER (WHERE objected_since IS NOT NULL), "
    "count(*) FILTER (WHERE unsubscribed_since IS NOT NULL) FROM permission_state WHERE topic = '*'",
    # Consents requested and confirmed, unsubscribes and objections per week (the ledger).
    "SELECT date_trunc('week', occurred_at) AS week, kind, count(*) FROM consent_event "
    "WHERE kind IN ('requested', 'confirmed', 'unsubscribed', 'objected') "
    "AND occurred_at >= timestamptz '2025-01-01+00' GROUP BY 1, 2",
    # Retention: contacts due per month over the next 24 months.
    "SELECT date_trunc('month', coalesce(last_interaction_at, created_at)), count(*) FROM contact "
    "WHERE coalesce(last_interaction_at, created_at) < timestamptz '2021-01-01+00' GROUP BY 1",
    # Privacy requests open, closed, overdue.
    "SELECT status, count(*) FROM privacy_request GROUP BY status",
]
DASHBOARD_BASELINE_SQLITE = [
    q.replace("date_trunc('week', occurred_at)", "strftime('%Y-%W', occurred_at)")
    .replace(
        "date_trunc('month', coalesce(last_interaction_at, created_at))",
        "strftime('%Y-%m', coalesce(last_interaction_at, created_at))",
    )
    .replace("timestamptz '2025-01-01+00'", "'2025-01-01'")
    .replace("timestamptz '2021-01-01+00'", "'2021-01-01'")
    .replace(
        "count(*) FILTER (WHERE objected_since IS NOT NULL)",
        "sum(objected_since IS NOT NULL)",
    )
    .replace(
        "count(*) FILTER (WHERE unsubscribed_since IS NOT NULL)",
        "sum(unsubscribed_since IS NOT NULL)",
    )
    for q in DASHBOARD_BASELINE
]


# Measuring -------------------------------------------------------------------------------


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def _timed(
    action: Callable[[], Any], times: int, budget_s: float = float("inf")
) -> tuple[list[float], Any]:
    """``times`` timed runs, fewer (at least five) once ``budget_s`` is spent: a
    slow page must not hold the whole run hostage on a shared machine."""
    seconds: list[float] = []
    result = None
    for _ in range(times):
        start = time.perf_counter()
        result = action()
        seconds.append(time.perf_counter() - start)
        if len(seconds) >= 5 and sum(seconds) > budget_s:
            break
    return seconds, result


def _signed_in_client(app: Any) -> Any:
    """A test client whose session names an admin, as a sign-in leaves it."""
    from werkzeug.security import generate_password_hash

    from extensions import db
    from kernel.access import (
        SESSION_EPOCH,
        SESSION_SIGNED_IN_AT,
        SESSION_STAMP,
        SESSION_USER,
        session_stamp,
    )
    from kernel.models import StaffUser

    with app.app_context():
        user = StaffUser(
            email="bench-admin@staff.example",
            name="Bench",
            role="admin",
            password_hash=generate_password_hash("bench-password-1"),
        )
        db.session.add(user)
        db.session.commit()
        user_id, stamp, epoch = user.id, session_stamp(user), user.session_epoch
        db.session.remove()
    client = app.test_client()
    with client.session_transaction() as session:
        session[SESSION_USER] = user_id
        session[SESSION_STAMP] = stamp
        session[SESSION_SIGNED_IN_AT] = int(time.time())
        session[SESSION_EPOCH] = epoch
    return client


def _route(app: Any, *candidates: str) -> str | None:
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    return next((c for c in candidates if c in rules), None)


def _export_route(app: Any) -> str | None:
    """The list's CSV export, wherever the list put it under /staff/contacts."""
    for rule in app.url_map.iter_rules():
        path = rule.rule
        exports = "csv" in path or "export" in path
        if path.startswith("/staff/contacts") and exports and "<" not in path:
            return path
    return None


def _snapshot_refresh() -> Callable[[], None] | None:
    """The dashboard's stored counts refreshed as its scheduled job does, if built."""
    try:
        from reports import snapshots
    except ImportError:
        return None
    from datetime import UTC, datetime

    at = datetime.fromisoformat(AT).replace(tzinfo=UTC)
    return lambda: snapshots.refresh(at)


def _filter_query(fields: dict[str, Any]) -> dict[str, str] | None:
    """The page's query string for a filter, through the list's own ``filter_args``."""
    try:
        from consent.contact_filters import ContactFilter, filter_args
    except ImportError:
        return None
    from datetime import date

    values = {
        k: date.fromisoformat(v) if k.endswith(("_from", "_to")) else v for k, v in fields.items()
    }
    try:
        return filter_args(ContactFilter(**values))
    except TypeError:
        return None


def run(ctx: Context) -> list[str]:
    from flask_migrate import upgrade

    from bench.retention import _app
    from extensions import db

    contacts, events = _sizes(ctx)
    tries = 5 if ctx.smoke else int(os.environ.get("BENCH_VIEWS_TRIES", 100))
    budget_s = float(os.environ.get("BENCH_VIEWS_BUDGET_S", 60))
    lines = [
        __doc__.split("\n\n", 1)[1].split("Measured in the same run")[0].strip(),
        "",
    ]
    with ctx.fresh_database() as url:
        app = _app(url)
        with app.app_context():
            upgrade(revision="heads")
            started = time.perf_counter()
            with db.engine.begin() as conn:
                generate(conn, contacts, events)
            generated_s = time.perf_counter() - started
            version = str(database_version()).split(" on ")[0].split(" (")[0]
            postgres = db.engine.dialect.name == "postgresql"
            db.session.remove()
        with app.app_context(), db.engine.connect() as conn:
            counted = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM contact), (SELECT count(*) FROM consent_event)"
                )
            ).one()
        client = _signed_in_client(app)
        list_path = _route(app, "/staff/contacts")
        export_path = _export_route(app)
        dashboard_path = _route(app, "/staff/dashboard")
        lines += [
            f"Generated {counted[0]:,} contacts and {counted[1]:,} ledger events in "
            f"{generated_s:.0f} s on {version}.",
            "",
            f"### The list's first page ({PAGE} rows), up to {tries} requests per filter "
            f"(fewer, at least 5, once {budget_s:.0f} s are spent: n says how many)",
            "",
            "| filter | n | page p50 | page p99 | bare SQL p50 | bare SQL p99 | p99 ratio | bar (p99 < 100 ms) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        worst: float | None = None
        with app.app_context():
            for label, (fields, where) in FILTERS.items():
                statement = sa.text(_bare_page(where))

                def bare(statement: Any = statement) -> int:
                    with db.engine.connect() as conn:
                        return len(conn.execute(statement).all())

                bare()
                base, _rows = _timed(bare, tries, budget_s)
                query = _filter_query(fields) if list_path else None
                if query is None:
                    lines.append(
                        f"| {label} | {len(base)} | not built | | {statistics.median(base) * 1000:.1f} ms "
                        f"| {_percentile(base, 99) * 1000:.1f} ms | | |"
                    )
                    continue

                def page(query: dict[str, str] = query) -> int:
                    response = client.get(list_path, query_string=query)
                    assert response.status_code == 200, (response.status_code, query)
                    return len(response.data)

                page()
                mine, _size = _timed(page, tries, budget_s)
                p99 = _percentile(mine, 99)
                worst = max(worst or 0.0, p99)
                lines.append(
                    f"| {label} | {len(mine)} | {statistics.median(mine) * 1000:.1f} ms "
                    f"| {p99 * 1000:.1f} ms "
                    f"| {statistics.median(base) * 1000:.1f} ms | {_percentile(base, 99) * 1000:.1f} ms "
                    f"| {p99 / _percentile(base, 99):.1f}x | {'met' if p99 < LIST_BAR_S else '**not met**'} |"
                )
            lines += ["", "### The CSV export", ""]
            fields, where = FILTERS[EXPORT_FILTER]
            bare_export = sa.text(
                f"SELECT {LIST_COLUMNS} FROM contact c WHERE {where} ORDER BY c.id"
            )

            def fetch_all() -> int:
                with db.engine.connect() as conn:
                    return sum(
                        1 for _ in conn.execution_options(yield_per=5000).execute(bare_export)
                    )

            base_s, base_rows = _timed(fetch_all, ctx.repeat)
            query = _filter_query(fields) if export_path else None
            lines += [
                "| what | rows | median | rows/s | ratio |",
                "| --- | --- | --- | --- | --- |",
                f"| bare fetch, {EXPORT_FILTER} | {base_rows:,} | {statistics.median(base_s):.2f} s "
                f"| {base_rows / statistics.median(base_s):,.0f} | 1.00x |",
            ]
            if query is None:
                lines.append(f"| CSV export, {EXPORT_FILTER} | not built | | | |")
            else:

                def export(query: dict[str, str] = query) -> int:
                    response = client.get(export_path, query_string=query)
                    assert response.status_code == 200, response.status_code
                    return response.get_data(as_text=True).count("\n") - 1

                mine_s, rows = _timed(export, ctx.repeat)
                rate = rows / statistics.median(mine_s)
                lines.append(
                    f"| CSV export, {EXPORT_FILTER} | {rows:,} | {statistics.median(mine_s):.2f} s "
                    f"| {rate:,.0f} | {statistics.median(mine_s) / statistics.median(base_s):.2f}x |"
                )
            lines += ["", "### The dashboard", ""]
            shapes = DASHBOARD_BASELINE if postgres else DASHBOARD_BASELINE_SQLITE

            def bare_dashboard() -> int:
                with db.engine.connect() as conn:
                    return sum(len(conn.execute(sa.text(q)).all()) for q in shapes)

            bare_dashboard()
            base_s, _n = _timed(bare_dashboard, ctx.repeat)
            lines += [
                "| what | median | ratio | bar (< 1 s) |",
                "| --- | --- | --- | --- |",
                f"| bare SQL of its {len(shapes)} chart shapes | {statistics.median(base_s):.3f} s | 1.00x | |",
            ]
            dashboard_s: float | None = None
            refresh = _snapshot_refresh()
            if refresh is not None:
                # The slow sections are counted by a scheduled job and stored
                # (reports.snapshots): time that job, then the page over its result.
                refresh_s, _n = _timed(refresh, ctx.repeat)
                lines.append(
                    f"| dashboard snapshot refresh (the scheduled job) "
                    f"| {statistics.median(refresh_s):.3f} s "
                    f"| {statistics.median(refresh_s) / statistics.median(base_s):.2f}x | |"
                )
            if dashboard_path is None:
                lines.append("| GET /staff/dashboard | not built | | |")
            else:

                def dashboard() -> int:
                    # A context of its own, as a server gives each request: the
                    # one around this section would share ``g`` (the signed-in
                    # user read by an earlier request) across requests.
                    with app.app_context():
                        response = client.get(dashboard_path)
                    assert response.status_code == 200, response.status_code
                    return len(response.data)

                dashboard()
                mine_s, _n = _timed(dashboard, ctx.repeat)
                dashboard_s = statistics.median(mine_s)
                lines.append(
                    f"| GET /staff/dashboard, full render (over the stored counts) | {dashboard_s:.3f} s "
                    f"| {dashboard_s / statistics.median(base_s):.2f}x "
                    f"| {'met' if dashboard_s < DASHBOARD_BAR_S else '**not met**'} |"
                )
            db.session.remove()
        with app.app_context():
            db.engine.dispose()
    lines += [
        "",
        "Server time: each request is made in process through Flask's test client by a "
        "signed-in admin, so it includes routing, the session, the queries and the "
        "template, not the network. p99 is the nearest rank of the n requests (with "
        "n under 100, the slowest or nearly).",
        "",
        f"Summary: list page worst p99 {'not built' if worst is None else f'{worst * 1000:.0f} ms'} "
        f"(bar 100 ms); dashboard {'not built' if dashboard_s is None else f'{dashboard_s:.2f} s'} "
        "(bar 1 s).",
    ]
    return lines
