"""Query plans of the staff contact search on PostgreSQL with 1,000,000 contacts.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/staff_bench \\
        .venv/bin/flask --app app db upgrade
    CONSENT_ENV=development .venv/bin/python -m bench.staff_search \\
        postgresql://postgres@127.0.0.1:5432/staff_bench

Fills an empty database with 100,000 companies and 1,000,000 contacts (about
a minute), then runs ``crm.services.search_contacts`` for a few typical
searches and prints EXPLAIN (ANALYZE, BUFFERS) of every statement it issued.
The output is what docs/staff-pages.md quotes.
"""

from __future__ import annotations

import re
import sys
import time

import sqlalchemy as sa

FIRST = "Anna Bo Cecilia Dieter Erik Frida Gustav Hanna Ingrid Jonas Karin Lars Maja Nils Olle Petra Rut Sven Tove Ulf"
LAST = "Andersson Berg Carlsson Dahl Ek Falk Gran Holm Isaksson Johansson Karlsson Lind Magnusson Nilsson Olsson Persson Quist Roos Svensson Tell Ullman Vik Wall Xu Yng Zetterberg"
COMPANY = "Kund Bransch Nordic Svea Fjord Stål Berg Skog Data Kyl"
FORM = "AB,Teknik AB,Industri AB,Konsult AB,Group AB"


def _array(words: list[str]) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words) + "]"


FILL = [
    f"""INSERT INTO company (id, name, org_number, country, created_at)
    SELECT g, ({_array(COMPANY.split())})[1 + g % 10] || ' ' || ({_array(FORM.split(","))})[1 + (g / 10) % 5] || ' ' || g,
           '556' || lpad(g::text, 7, '0'), 'SE', now()
    FROM generate_series(1, 100000) g""",
    "SELECT setval('company_id_seq', 100000)",
    f"""INSERT INTO contact (email, name, company_id, country, language, created_at, updated_at)
    SELECT lower(f) || '.' || lower(l) || '.' || g || '@c' || (1 + g % 100000) || '.example',
           f || ' ' || l, 1 + g % 100000, 'SE', 'sv', now(), now()
    FROM generate_series(1, 1000000) g,
         LATERAL (SELECT ({_array(FIRST.split())})[1 + g % 20] AS f,
                         ({_array(LAST.split())})[1 + (g / 20) % 26] AS l) names""",
    "ANALYZE company",
    "ANALYZE contact",
]

SEARCHES = ["bo.andersson.1@c2.example", "anna", "karin lind", "nordic teknik", "zzz"]


def main(url: str) -> None:
    from app import create_app
    from crm import services
    from extensions import db
    from kernel.access import Actor

    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    actor = Actor(kind="cli", name="bench", role="admin")
    with app.app_context():
        if not db.session.scalar(sa.text("SELECT count(*) FROM contact")):
            for statement in FILL:
                db.session.execute(sa.text(statement))
            db.session.commit()
        total = db.session.scalar(sa.text("SELECT count(*) FROM contact"))
        print(f"{total} contacts\n")
        captured: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().startswith("SELECT contact."):
                captured.append((statement, params))

        for term in SEARCHES:
            services.search_contacts(actor, term)  # warm the cache
            sa.event.listen(db.engine, "before_cursor_execute", capture)
            started = time.perf_counter()
            found = services.search_contacts(actor, term)
            elapsed = (time.perf_counter() - started) * 1000
            sa.event.remove(db.engine, "before_cursor_execute", capture)
            print(f"### {term!r}: {len(found)} contacts, {elapsed:.1f} ms for the whole call\n")
            raw = db.session.connection().connection.dbapi_connection
            for statement, params in captured:
                shown = re.sub(
                    r"SELECT contact\.id, .*?contact\.updated_at",
                    "SELECT contact.*",
                    " ".join(statement.split()),
                )
                print("```")
                print(shown, "--", params)
                with raw.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
                    for (line,) in cursor.fetchall():
                        print(line)
                print("```\n")
            captured.clear()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/staff_bench")
