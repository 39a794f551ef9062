"""A first HubSpot sync of N contacts against the stand-in: time, peak memory,
and HubSpot API calls per contact (issue 24).

``python -m bench.connector_sync 2000`` (SQLite in a temporary folder, or
``BENCH_DATABASE_URL``). Outside ``python -m bench``'s framework on purpose:
there is no same-run baseline to divide by yet; the figures are absolute and
go into docs/benchmarks.md by hand.

Data: N contacts in the stand-in, one company per 20 contacts (a customer
every other one), one call per contact dated after the contact's creation
here, two mapped subscription types. One ``sync.sync("hubspot")``: contacts
in, calls in, the change feed out (decisions to HubSpot), then a second sync
that must change nothing.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any


def main(n: int) -> None:
    from app import create_app
    from connectors import sync
    from connectors.base import RetryPolicy
    from tests.connectors.hubspot_standin import TOKEN, Server

    folder = tempfile.mkdtemp()
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{folder}/bench.db"
    with Server() as server:
        hubspot = server.standin
        hubspot.subscription_names.update({"501": "Newsletter", "502": "Events"})
        companies = [
            hubspot.add("companies", {"name": f"Kund {i} AB", "country": "SE",
                                      "lifecyclestage": "customer" if i % 2 else "lead"})
            for i in range(max(n // 20, 1))
        ]  # fmt: skip
        for i in range(n):
            hubspot.add(
                "contacts",
                {"email": f"person{i}@kund{i // 20}.se", "firstname": "P", "lastname": str(i),
                 "country": "SE"},
                {"companies": [companies[i // 20 % len(companies)]]},
            )  # fmt: skip
        app = create_app(
            {
                "TESTING": True, "CONSENT_ENV": "testing", "SECRET_KEY": "bench-secret-key-x" * 3,
                "SUPPRESSION_KEY": "bench-suppression", "SQLALCHEMY_DATABASE_URI": url,
                "CONNECTORS_ENABLED": ["hubspot"], "HUBSPOT_ACCESS_TOKEN": TOKEN,
                "HUBSPOT_BASE_URL": server.base_url,
                "HUBSPOT_SUBSCRIPTION_TYPES": ["newsletter=501", "events=502"],
                "HUBSPOT_INTERACTIONS": ["calls"],
            }
        )  # fmt: skip
        with app.app_context():
            from flask_migrate import upgrade

            upgrade(revision="heads")
        # The calls come after the contacts exist here, as they would in a running sync.
        policy = RetryPolicy(sleep=lambda s: None)
        started = time.perf_counter()
        with app.app_context():
            first = sync.sync("hubspot", policy=policy)
        contacts_s = time.perf_counter() - started
        moment = datetime.now(UTC) + timedelta(seconds=1)
        time.sleep(1.1)
        for remote in list(hubspot.objects["contacts"]):
            hubspot.add("calls", {"hs_timestamp": moment.isoformat()}, {"contacts": [remote]})
        calls_before = len(hubspot.requests)
        started = time.perf_counter()
        with app.app_context():
            second = sync.sync("hubspot", policy=policy)
        calls_s = time.perf_counter() - started
        after_calls = len(hubspot.requests)
        started = time.perf_counter()
        with app.app_context():
            third = sync.sync("hubspot", policy=policy)
        idle_s = time.perf_counter() - started
        kinds: Counter[str] = Counter(
            f"{m} {p.split('/')[1]}/{'/'.join(p.split('/')[2:5])}".rstrip("/")
            for m, p in hubspot.requests[:calls_before]
        )
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report: dict[str, Any] = {
        "contacts": n,
        "first sync (contacts, companies, decisions out)": f"{contacts_s:.1f} s, {first.items_in} in, {first.items_out} out",
        "second sync (one new call each)": f"{calls_s:.1f} s, {second.items_in} in, {second.items_out} out, {after_calls - calls_before} API calls",
        "third sync (nothing new)": f"{idle_s:.1f} s, {third.items_in} in, {third.items_out} out, {len(hubspot.requests) - after_calls} API calls",
        "API calls per contact, first sync": f"{calls_before / n:.2f}",
        "peak RSS of the process (stand-in included)": f"{peak_mib:.0f} MiB",
    }
    for key, value in report.items():
        print(f"| {key} | {value} |")
    for kind, count in sorted(kinds.items()):
        print(f"|   {kind} | {count} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
