"""Privacy-policy versions (R23): publish, list, and consents that name them."""

from __future__ import annotations

import hashlib
import json

SIGNUP_SV = "Ja, skicka mig nyhetsbrevet. Jag kan avsluta när som helst."


def publish(api, version="2.0", **extra):  # type: ignore[no-untyped-def]
    body = {
        "version": version,
        "url": "https://example.com/integritet",
        "summary": "New processor for email",
        "wordings": [{"key": "signup", "language": "sv", "text": SIGNUP_SV}],
        **extra,
    }
    return api.post("/api/v1/policies", json=body)


def consent(api, version: str, wording: str = SIGNUP_SV):  # type: ignore[no-untyped-def]
    return api.post(
        "/api/v1/contacts",
        json={
            "email": "anna@kund.se",
            "country": "SE",
            "basis": {
                "type": "consent",
                "source": "webinar",
                "topics": ["newsletter"],
                "evidence": {
                    "obtained_at": "2026-10-01T10:00:00+00:00",
                    "policy_version": version,
                    "wording": wording,
                },
            },
        },
    )


def test_admin_publishes_and_everyone_lists_with_wording_hashes(app, api_as, admin_api) -> None:
    published = publish(admin_api, major=True)
    assert published.status_code == 201, published.json
    assert published.json["major"] is True
    wording = published.json["wordings"][0]
    assert wording["sha256"] == hashlib.sha256(SIGNUP_SV.encode()).hexdigest()
    listed = api_as("sales").get("/api/v1/policies").json
    assert [p["version"] for p in listed] == ["2.0"]
    assert publish(api_as("marketing"), "2.1").status_code == 403


def test_a_version_is_published_once(app, admin_api) -> None:
    publish(admin_api)
    again = publish(admin_api)
    assert (again.status_code, again.json["error"]["code"]) == (409, "policy_version_exists")
    missing = admin_api.post("/api/v1/policies", json={"version": "3.0"})
    assert missing.status_code == 422


def test_consents_record_the_published_version_and_wording_hash(app, admin_api) -> None:
    publish(admin_api, "2.0")
    refused = consent(admin_api, "1.9")
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "unknown_policy_version")
    accepted = consent(admin_api, "2.0")
    assert accepted.status_code == 201
    event = admin_api.get(f"/api/v1/contacts/{accepted.json['id']}/events").json[0]
    assert event["policy_version"] == "2.0"
    assert event["wording_hash"] == hashlib.sha256(SIGNUP_SV.encode()).hexdigest()


def test_current_version_falls_back_to_the_policy_file_until_one_is_published(
    app, admin_api
) -> None:
    from consent import policies

    with app.app_context():
        assert policies.current_version_label() == "1.0"
        assert policies.current_wording("signup", "sv") is None
    publish(admin_api, "2.0")
    with app.app_context():
        assert policies.current_version_label() == "2.0"
        assert policies.current_wording("signup", "sv").text == SIGNUP_SV
        assert policies.current_wording("signup", "de") is None  # no English to fall back to


def test_publishing_signals_after_commit_with_the_major_flag(app, admin_api) -> None:
    from kernel.signals import policy_published

    seen = []

    def receiver(sender, policy_version_id, is_major):  # type: ignore[no-untyped-def]
        seen.append(is_major)

    policy_published.connect(receiver)
    try:
        publish(admin_api, "2.0", major=True)
        publish(admin_api, "2.1")
    finally:
        policy_published.disconnect(receiver)
    assert seen == [True, False]


def test_cli_publishes_with_wording_files_and_lists(app, tmp_path) -> None:
    wording = tmp_path / "signup-sv.txt"
    wording.write_text(SIGNUP_SV, encoding="utf-8")
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "policies",
            "publish",
            "3.0",
            "--major",
            "--url",
            "https://example.com/privacy",
            "--wording",
            f"signup:sv:{wording}",
        ]
    )
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(SIGNUP_SV.encode()).hexdigest() in result.output
    listed = json.loads(runner.invoke(args=["policies", "list", "--json"]).output)
    assert (listed[0]["version"], listed[0]["major"]) == ("3.0", True)
    audit = json.loads(runner.invoke(args=["audit", "list", "--json"]).output)
    assert any(e["action"] == "policy.publish" and e["actor"].startswith("cli:") for e in audit)
