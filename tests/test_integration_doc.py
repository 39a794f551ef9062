"""The receiver example of docs/integration.md, run as printed against the
service: an integrator who copies it gets a receiver that verifies, skips
repeats, keeps permissions and forgets an erased person."""

from __future__ import annotations

import re
import threading
import types
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "integration.md"
CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}


def receiver_module() -> types.ModuleType:
    section = DOC.read_text().split("### A complete receiver in Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/integration.md has no receiver example"
    module = types.ModuleType("doc_receiver")
    exec(compile(code.group(1), str(DOC), "exec"), module.__dict__)
    return module


def test_the_documented_receiver_verifies_and_applies_every_delivery(
    app, admin_api, stub_worker
) -> None:
    doc = receiver_module()
    crm = doc.CRM()
    server: Any = None

    def start(secret: str) -> Any:
        nonlocal server
        server = doc.make_server(secret, crm, host="127.0.0.1", port=port)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    # The port first (the URL is registered before the secret is known).
    probe = doc.make_server("whsec_" + "A" * 43 + "=", crm, host="127.0.0.1", port=0)
    port = probe.server_address[1]
    probe.server_close()
    created = admin_api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hooks"})
    start(created.json["secret"])
    try:
        kept = admin_api.post(
            "/api/v1/contacts", json={"email": "kvar@kund.se", "country": "SE", "basis": CUSTOMER}
        ).json["id"]
        erased = admin_api.post(
            "/api/v1/contacts", json={"email": "bort@kund.se", "country": "SE", "basis": CUSTOMER}
        ).json["id"]
        admin_api.post(f"/api/v1/contacts/{kept}/objection", json={"received_via": "phone"})
        stub_worker.join("webhooks", timeout=20_000)
        assert erased in crm.contacts  # known before the erasure
        assert admin_api.delete(f"/api/v1/contacts/{erased}").status_code in (200, 204)
        stub_worker.join("webhooks", timeout=20_000)
        # An admin's replay of everything: the receiver skips what it applied.
        applied = len(crm.applied)
        webhook_id = created.json["id"]
        admin_api.post(
            f"/api/v1/webhooks/{webhook_id}/replay", json={"since": "2000-01-01T00:00:00Z"}
        )
        stub_worker.join("webhooks", timeout=20_000)
    finally:
        server.shutdown()
        server.server_close()

    assert len(crm.applied) == applied
    assert set(crm.contacts) == {kept}
    assert crm.contacts[kept]["email"] == "kvar@kund.se"
    assert crm.contacts[kept]["may_email"] and not any(crm.contacts[kept]["may_email"].values())
    # Every item about a contact that is gone arrives as a tombstone (the
    # erasure's own, and the decisions change its transaction also wrote).
    assert {f["contact_id"] for f in crm.forgotten} == {erased}
    log = admin_api.get(f"/api/v1/webhooks/{webhook_id}/deliveries?limit=1000").json
    assert {d["status"] for d in log} == {"delivered"}  # every post verified (2xx)
