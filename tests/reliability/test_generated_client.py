"""A client generated from the served document gets typed models.

``openapi-python-client`` (the generator integrators tried) builds a client
from ``/api/v1/openapi.json`` into a temporary folder, offline; the client is
imported and called against the service on a real socket (werkzeug's server
on 127.0.0.1). Reading a contact must give a ``Contact`` model whose
``company`` is a ``Company`` model, not a dict: issue 20 item 7 found the
3.0 document's ``anyOf`` with an untyped object, which left it a dict.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

GENERATOR = shutil.which("openapi-python-client") or str(
    Path(sys.executable).parent / "openapi-python-client"
)
PACKAGE = "marketing_consent_service_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory, app: Any) -> Iterator[Any]:
    if not Path(GENERATOR).exists():
        pytest.fail("openapi-python-client is not installed (the dev extra installs it)")
    folder = tmp_path_factory.mktemp("generated-client")
    document = folder / "openapi.json"
    document.write_text(json.dumps(app.test_client().get("/api/v1/openapi.json").get_json()))
    result = subprocess.run(
        [GENERATOR, "generate", "--path", str(document), "--output-path", str(folder / "client")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder / "client"))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder / "client"))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def live_url(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_generated_models_are_typed(client_package: Any) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    # Exactly the model or null: the 3.0 document gave "Company | ContactCompanyType0Type0 | None".
    assert models.Contact.__annotations__["company"] == "Company | None"
    # The two shapes of a basis, and enums for what the server takes from a list.
    assert "ConsentBasis" in str(models.ContactCreate.__annotations__["basis"])
    assert "LegitimateInterestBasis" in str(models.ContactCreate.__annotations__["basis"])
    assert {m.value for m in models.BatchCheckTopic} >= {"newsletter", "events"}
    assert {m.value for m in models.ObjectionChannel} == {"email", "phone", "all"}


def test_reading_a_contact_returns_a_typed_company(
    client_package: Any, live_url: str, token_for: Any
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    create = importlib.import_module(f"{PACKAGE}.api.consent_api.post_api_v1_contacts")
    read = importlib.import_module(f"{PACKAGE}.api.crm_api.get_api_v1_contacts_contact_id")
    client = client_package.AuthenticatedClient(base_url=live_url, token=token_for("marketing"))

    created = create.sync(
        client=client,
        body=models.ContactCreate(
            email="typed.client@kund.se",
            country=models.ContactCreateCountryType0.SE,
            company=models.CompanyInput(name="Kund AB", org_number="556000-0001"),
            basis=models.LegitimateInterestBasis(
                type_=models.LegitimateInterestBasisType.LEGITIMATE_INTEREST,
                kind=models.LegitimateInterestBasisKind.CUSTOMER,
                source="crm-sync",
            ),
        ),
    )
    assert isinstance(created, models.ContactRegistered), created

    contact = read.sync(client=client, contact_id=created.id)
    assert isinstance(contact, models.Contact), contact
    assert isinstance(contact.company, models.Company), type(contact.company)
    assert contact.company.name == "Kund AB"
    assert contact.company.org_number == "556000-0001"
    assert contact.email == "typed.client@kund.se"
