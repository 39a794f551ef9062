"""A HubSpot sync of N contacts against the stand-in: time, peak memory and
HubSpot API calls per contact (issue 24), with a same-run baseline.

Data: N contacts (``BENCH_CONNECTOR_CONTACTS``, default 100,000; 300 with
``--smoke``), one company per 20 contacts (every other one a customer, so
half the contacts get the customer basis and their subscription statuses
written), one call per contact, two mapped subscription types.

Three processes, so that each one's memory is its own: the stand-in
(``tests/connectors/hubspot_standin.py``, the one the tests use; bench
imports it from there as no other code may), the baseline reader, and the
sync. The baseline is a bare read of every contact and call page with the
client library (what no sync can go below: the CRM's answers over HTTP). The
sync is ``connectors.sync.sync("hubspot")`` twice on a fresh database: the
first reads everything (contacts with their companies, calls, decisions out
to HubSpot); the second reads what changed since, which is every contact
the first wrote its summary to (HubSpot moves their last-modified time), and
finds them unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench.__main__ import ROOT, Context, database_version

TITLE = "CRM connector sync against the HubSpot stand-in (issue 24)"
SUBSCRIPTIONS = {"501": "Newsletter", "502": "Events"}


def _contacts(ctx: Context) -> int:
    if ctx.smoke:
        return 300
    return int(os.environ.get("BENCH_CONNECTOR_CONTACTS", 100_000))


# The stand-in's process ------------------------------------------------------------


def _standin(n: int) -> None:
    """Serve the stand-in with N contacts; print its URL, then answer
    ``counts`` on stdin with the requests it served (JSON) until stdin ends."""
    from tests.connectors.hubspot_standin import Server

    with Server() as server:
        hubspot = server.standin
        hubspot.subscription_names.update(SUBSCRIPTIONS)
        companies = [
            hubspot.add("companies", {"name": f"Kund {i} AB", "country": "SE",
                                      "lifecyclestage": "customer" if i % 2 else "lead"})
            for i in range(max(n // 20, 1))
        ]  # fmt: skip
        for i in range(n):
            contact = hubspot.add(
                "contacts",
                {"email": f"person{i}@kund{i // 20}.se", "firstname": "P", "lastname": str(i),
                 "country": "SE"},
                {"companies": [companies[i // 20 % len(companies)]]},
            )  # fmt: skip
            hubspot.add("calls", {"hs_timestamp": "2026-03-04T10:15:00Z"}, {"contacts": [contact]})
        print(server.base_url, flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                kinds = Counter(_kind(m, p) for m, p in list(hubspot.requests))
                print(json.dumps(kinds), flush=True)


def _kind(method: str, path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[:3] == ["crm", "v3", "objects"] and len(parts) == 5 and parts[4] != "search":
        parts[4] = "{id}"
    if parts[:2] == ["communication-preferences", "v3"] and parts[2] == "status":
        parts = [*parts[:4], "{email}"]
    return f"{method} /{'/'.join(parts)}"


# The baseline's process: every page read with the client library --------------------


def _read(base_url: str) -> None:
    from hubspot import Client

    from tests.connectors.hubspot_standin import TOKEN

    client = Client.create(access_token=TOKEN, host=base_url)
    started = time.perf_counter()
    read = 0
    for api, associations in (
        (client.crm.contacts.basic_api, ["companies"]),
        (client.crm.objects.calls.basic_api, ["contacts"]),
    ):
        after = None
        while True:
            page = api.get_page(limit=100, after=after, associations=associations)
            read += len(page.results)
            if page.paging is None or page.paging.next is None:
                break
            after = page.paging.next.after
    print(json.dumps({"seconds": time.perf_counter() - started, "records": read}))


# The sync's process ----------------------------------------------------------------


def _sync(url: str, base_url: str) -> None:
    from flask_migrate import upgrade

    from bench.retention import _app
    from connectors import sync
    from connectors.base import RetryPolicy
    from tests.connectors.hubspot_standin import TOKEN

    app = _app(url)
    app.config.update(
        {
            "CONNECTORS_ENABLED": ["hubspot"],
            "HUBSPOT_ACCESS_TOKEN": TOKEN,
            "HUBSPOT_BASE_URL": base_url,
            "HUBSPOT_SUBSCRIPTION_TYPES": [f"{t}={i}" for t, i in (("newsletter", "501"),
                                                                   ("events", "502"))],
            "HUBSPOT_INTERACTIONS": ["calls"],
        }
    )  # fmt: skip
    with app.app_context():
        upgrade(revision="heads")
        out: dict[str, Any] = {"database": database_version()}
    policy = RetryPolicy(sleep=lambda s: None)
    profile = os.environ.get("BENCH_CONNECTOR_PROFILE")  # a file for the first sync's cProfile
    for name in ("first", "second"):
        profiler = None
        if profile and name == "first":
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        with app.app_context():
            result = sync.sync("hubspot", policy=policy)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        out[name] = {
            "seconds": time.perf_counter() - started,
            "outcome": result.outcome,
            "in": result.items_in,
            "out": result.items_out,
            "skipped": len(result.skipped),
        }
        print(json.dumps({"done": name}), flush=True)
    from bench.imports import _peak_rss_kib

    out["peak_rss_kib"] = _peak_rss_kib()
    print(json.dumps(out), flush=True)


# The parent: one database --------------------------------------------------------------


def _python(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.connector_sync", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        **kwargs,
    )


def _last_json(text: str) -> dict[str, Any]:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def measure(ctx: Context, url: str, n: int) -> dict[str, Any]:
    standin = _python("standin", str(n), stdin=subprocess.PIPE)
    assert standin.stdout is not None and standin.stdin is not None
    try:
        base_url = standin.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("The stand-in did not start.")

        def counts() -> Counter[str]:
            assert standin.stdin is not None and standin.stdout is not None
            standin.stdin.write("counts\n")
            standin.stdin.flush()
            return Counter(json.loads(standin.stdout.readline()))

        reader = _python("read", base_url)
        baseline = _last_json(reader.communicate()[0])
        before = counts()
        syncer = _python("sync", url, base_url)
        assert syncer.stdout is not None
        after_first: Counter[str] | None = None
        lines = []
        for line in syncer.stdout:
            lines.append(line)
            if '"done": "first"' in line:
                after_first = counts()
        if syncer.wait() != 0:
            raise RuntimeError(f"The sync child failed on {url}.")
        result = _last_json("".join(lines))
        after = counts()
        assert after_first is not None
        result["baseline"] = baseline
        result["calls_first"] = after_first - before
        result["calls_second"] = after - after_first
        return result
    finally:
        standin.stdin.close()
        standin.wait(timeout=60)


def run(ctx: Context) -> list[str]:
    n = _contacts(ctx)
    rows = []
    kinds: dict[str, Counter[str]] = {}
    for url in ctx.databases():
        with ctx.on(url).fresh_database() as fresh:
            result = measure(ctx, fresh, n)
        dialect = "PostgreSQL" if "postgres" in result["database"].lower() else "SQLite"
        first, second, baseline = result["first"], result["second"], result["baseline"]
        calls_first = sum(result["calls_first"].values())
        calls_second = sum(result["calls_second"].values())
        kinds[dialect] = result["calls_first"]
        rows.append(
            f"| {dialect} | {n:,} | {first['seconds']:.0f} s ({first['in']:,} in, "
            f"{first['out']:,} out, {first['outcome']}) | {baseline['seconds']:.1f} s | "
            f"{first['seconds'] / baseline['seconds']:.1f} | {calls_first / n:.2f} | "
            f"{second['seconds']:.0f} s ({second['in']} in, {second['out']} out) | "
            f"{calls_second / n:.2f} | {result['peak_rss_kib'] / 1024:.0f} MiB |"
        )
    lines = [
        f"{n:,} contacts in the stand-in, each with one call; one company per 20 contacts,",
        "every other company a customer; two mapped subscription types. The baseline is a bare",
        "read of every contact and call page with `hubspot-api-client` (the same stand-in, in",
        "its own process): the ratio says how much the sync adds to reading HubSpot's answers.",
        "Peak memory is the sync process's own (`VmHWM`; the stand-in runs in another process).",
        "",
        "| database | contacts | first sync | baseline: bare read | ratio | API calls per "
        "contact, first | second sync (reads what changed) | API calls per contact, second "
        "| peak memory of the sync |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "API calls of the first sync, by endpoint:",
        "",
        "| endpoint | " + " | ".join(kinds) + " |",
        "| --- | " + " | ".join("---:" for _ in kinds) + " |",
    ]
    endpoints = sorted({k for c in kinds.values() for k in c})
    for endpoint in endpoints:
        lines.append(
            f"| `{endpoint}` | " + " | ".join(f"{c[endpoint]:,}" for c in kinds.values()) + " |"
        )
    return lines


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    command = sys.argv[1]
    if command == "standin":
        _standin(int(sys.argv[2]))
    elif command == "read":
        _read(sys.argv[2])
    elif command == "sync":
        _sync(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown command {command!r}")
