"""Configuration from the environment."""

from __future__ import annotations

import pytest

from app import create_app


def test_production_refuses_to_start_without_secrets(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("SUPPRESSION_KEY", raising=False)
    monkeypatch.setenv("CONSENT_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(RuntimeError, match="SECRET_KEY is not set"):
        create_app()


def test_development_generates_secrets_once_and_keeps_them(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("SUPPRESSION_KEY", raising=False)
    monkeypatch.setenv("CONSENT_ENV", "development")
    monkeypatch.setenv("INPROCESS_WORKER", "0")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    config = {"TESTING": True}
    first = create_app(config)
    second = create_app(config)
    assert first.config["SECRET_KEY"] and first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["SUPPRESSION_KEY"] == second.config["SUPPRESSION_KEY"]
    assert first.config["SECRET_KEY"] != first.config["SUPPRESSION_KEY"]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://u:p@db:5432/c", "postgresql+psycopg://u:p@db:5432/c"),
        ("postgresql://u@db/c", "postgresql+psycopg://u@db/c"),
        ("postgresql+psycopg://u@db/c", "postgresql+psycopg://u@db/c"),
    ],
)
def test_database_url_speaks_psycopg3(monkeypatch, given, used) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    app = create_app({"SECRET_KEY": "x", "SUPPRESSION_KEY": "y", "TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == used


def test_malformed_policy_file_stops_start_with_the_reason(monkeypatch, tmp_path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[topics.news]\nbases = ["telepathy"]\n')
    monkeypatch.setenv("POLICY_FILE", str(policy))
    with pytest.raises(RuntimeError, match="policy file is malformed"):
        create_app({"SECRET_KEY": "x", "SUPPRESSION_KEY": "y", "TESTING": True})
