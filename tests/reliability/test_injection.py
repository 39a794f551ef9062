"""Row "injection": email header injection in names, CSV formula cells in
exports, SQL and HTML in every text field; 0 successful injections. Subjects
are fixed texts (no user input reaches them). The export a spreadsheet opens
is the audit log's CSV (`flask audit list --csv`, ``kernel.spreadsheet``).
"""

from __future__ import annotations

import csv
import io

from tests.conftest import ApiClient, count_rows
from tests.mailing.helpers import contact_id_of, signup
from tests.reliability.conftest import figure
from tests.staff.helpers import client_as

HEADER_ATTACKS = [
    "Eve\r\nBcc: victim@evil.example",
    "Eve\nBcc: victim@evil.example",
    "Eve\rCc: victim@evil.example",
    "Eve\r\n\r\nInjected body",
    'Eve" <victim@evil.example>, "x',
    "=?utf-8?q?Eve=0D=0ABcc:_victim@evil.example?=",
]
HOSTILE = [
    "'); DROP TABLE contact;--",
    "' OR '1'='1",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }}",
]
MARKUP = ("<script>alert('x')</script>", '"><img src=x onerror=alert(1)>')


def test_header_injection_in_names_never_adds_a_recipient_or_header(
    app, client, smtp, mail_worker
) -> None:
    injected = 0
    for n, name in enumerate(HEADER_ATTACKS):
        signup(client, f"header{n}@example.se", name=name)
    mail_worker.drain()
    smtp.wait_for(len(HEADER_ATTACKS))
    for message in smtp.messages:
        headers = {k.lower() for k in message}
        addresses = [a.addr_spec for a in message["To"].addresses]
        if "bcc" in headers or "cc" in headers or len(addresses) != 1 or "evil" in addresses[0]:
            injected += 1
        if (
            "Injected body"
            in str(message.get_body(preferencelist=("plain",)).get_content()).split("\n")[0]
        ):
            injected += 1
    # The envelope: every message went to its one recipient only.
    recipients = [a.addr_spec for m in smtp.messages for a in m["To"].addresses]
    figure("injection:header", attempts=len(HEADER_ATTACKS), injected=injected)
    assert injected == 0
    assert len(smtp.messages) == len(HEADER_ATTACKS) and all("evil" not in r for r in recipients)


def test_sql_and_html_in_every_text_field_are_kept_as_text(app, client, admin_api) -> None:
    injected = 0
    for n, text in enumerate(HOSTILE):
        created = admin_api.post(
            "/api/v1/contacts",
            json={
                "email": f"api{n}@example.se",
                "name": text,
                "phone": text[:40],
                "company": {"name": text, "org_number": text[:40]},
                "basis": {"type": "legitimate_interest", "kind": "customer", "source": text},
            },
        )
        assert created.status_code in (200, 201, 422), created.json
        if created.status_code == 422:
            continue
        contact_id = created.json["id"]
        read = admin_api.get(f"/api/v1/contacts/{contact_id}").json
        injected += read["name"] != text or read["company"]["name"] != text
        signup(client, f"form{n}@example.se", name=text, company=text)
        found = admin_api.get("/api/v1/contacts", query_string={"email": f"form{n}@example.se"})
        assert found.status_code in (200, 404)
        note = admin_api.post(
            f"/api/v1/contacts/{contact_id}/activities",
            json={"kind": "note", "summary": text, "occurred_at": "2026-01-01T00:00:00Z"},
        )
        assert note.status_code < 500
    rows = count_rows(app)
    injected += rows["contact"] != 2 * len(HOSTILE)

    staff = client_as(app, "admin")
    for n, _ in enumerate(HOSTILE):
        for address in (f"api{n}@example.se", f"form{n}@example.se"):
            contact_id = contact_id_of(app, address)
            page = staff.get(f"/contacts/{contact_id}").get_data(as_text=True)
            injected += any(raw in page for raw in MARKUP)
        search = staff.get("/", query_string={"q": HOSTILE[n]}).get_data(as_text=True)
        injected += any(raw in search for raw in MARKUP)
    figure(
        "injection:sql_html",
        values=len(HOSTILE),
        fields="name, phone, company, org number, basis source, activity, search",
        injected=injected,
    )
    assert injected == 0


FORMULAS = [
    '=HYPERLINK("http://evil.example","x")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=2+2",
    "\r=3+3",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def test_formula_cells_in_the_csv_export_are_never_run(app, client) -> None:
    """Texts a caller chooses reach the export: a token's name is the detail of
    its ``api_token.create`` entry (first in the cell) and the actor of what
    the token does. Each name starts with one of the triggers."""
    from crm.staff import create_token
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

    for n, formula in enumerate(FORMULAS):
        with app.app_context():
            _, raw = create_token(SYSTEM_ACTOR, formula, "admin")
            db.session.remove()
        created = ApiClient(client, raw).post(
            "/api/v1/contacts",
            json={"email": f"csv{n}@example.se", "name": formula,
                  "basis": {"type": "legitimate_interest", "kind": "customer",
                            "source": formula[:32]}},
        )  # fmt: skip
        assert created.status_code == 201, created.json
    output = app.test_cli_runner().invoke(args=["audit", "list", "--csv", "--limit", "1000"]).output
    rows = list(csv.reader(io.StringIO(output, newline="")))
    cells = [cell for row in rows[1:] for cell in row]
    carrying = [cell for cell in cells if any(f.strip() in cell for f in FORMULAS)]
    at_start = [c for c in carrying if any(c.lstrip("'").startswith(f.strip()) for f in FORMULAS)]
    runnable = [cell for cell in cells if cell.startswith(TRIGGERS)]
    figure("injection:csv_formulas", payloads=len(FORMULAS), cells_carrying_one=len(carrying),
           first_in_their_cell=len(at_start), cells_a_spreadsheet_would_run=len(runnable))  # fmt: skip
    assert len(at_start) >= len(FORMULAS)  # the payloads did reach the export, first in a cell
    assert runnable == []
