"""The settings module: production refusals, secrets from files, deprecated
names, and the README's table (kernel/settings/variables.py, docs/configuration.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import create_app
from kernel import settings
from kernel.cli import settings_cli

ROOT = Path(__file__).resolve().parent.parent

# What a real production host sets: every refusal satisfied.
PRODUCTION = {
    "CONSENT_ENV": "production",
    "DATABASE_URL": "postgresql://consent:pw@db.internal:5432/consent",
    "DRAMATIQ_BROKER_URL": "redis://redis.internal:6379/0",
    "RATELIMIT_STORAGE_URI": "redis://redis.internal:6379/1",
    "SMTP_URL": "smtps://mailer:pw@smtp.example.com:465",
    "PUBLIC_BASE_URL": "https://consent.example.com",
    "SECRET_KEY": "s" * 32,
    "SUPPRESSION_KEY": "k" * 32,
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No declared variable set (the test command sets some), under any of its names."""
    import os

    for setting in settings.SETTINGS:
        for name in (*setting.names_read(), f"{setting.name}_FILE"):
            monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(settings.LEGACY_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


def refusal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> settings.SettingsError:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError) as raised:
        create_app()
    return raised.value


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in PRODUCTION.items() if k != name}


REFUSALS = [
    pytest.param(without("DATABASE_URL"), "DATABASE_URL", id="database-unset"),
    pytest.param(
        {**PRODUCTION, "DATABASE_URL": "sqlite:////var/lib/consent/consent.db"},
        "DATABASE_URL",
        id="database-sqlite",
    ),
    pytest.param(without("DRAMATIQ_BROKER_URL"), "DRAMATIQ_BROKER_URL", id="no-broker"),
    pytest.param(without("RATELIMIT_STORAGE_URI"), "RATELIMIT_STORAGE_URI", id="limits-unset"),
    pytest.param(
        {**PRODUCTION, "RATELIMIT_STORAGE_URI": "memory://"},
        "RATELIMIT_STORAGE_URI",
        id="limits-in-memory",
    ),
    pytest.param(without("SMTP_URL"), "SMTP_URL", id="smtp-unset"),
    pytest.param(without("PUBLIC_BASE_URL"), "PUBLIC_BASE_URL", id="base-url-unset"),
    pytest.param(
        {**PRODUCTION, "PUBLIC_BASE_URL": "http://consent.example.com"},
        "PUBLIC_BASE_URL",
        id="base-url-http",
    ),
    pytest.param(without("SECRET_KEY"), "SECRET_KEY", id="secret-key-unset"),
    pytest.param({**PRODUCTION, "SECRET_KEY": "s" * 31}, "SECRET_KEY", id="secret-key-short"),
    pytest.param(without("SUPPRESSION_KEY"), "SUPPRESSION_KEY", id="suppression-key-unset"),
    pytest.param(
        {**PRODUCTION, "SUPPRESSION_KEY": "k" * 31}, "SUPPRESSION_KEY", id="suppression-key-short"
    ),
]


@pytest.mark.parametrize(("env", "variable"), REFUSALS)
def test_production_refuses_to_start_naming_the_variable(
    environ: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    error = refusal(environ, env)
    assert len(error.problems) == 1, error.problems
    assert re.match(rf"{variable}\b", error.problems[0])
    assert f"- {error.problems[0]}" in str(error).splitlines()


def test_a_short_key_counts_bytes_not_characters(environ: pytest.MonkeyPatch) -> None:
    # 16 two-byte characters are 32 bytes: enough.
    assert settings.problems({**PRODUCTION, "SECRET_KEY": "é" * 16})[0] == []
    assert settings.problems({**PRODUCTION, "SECRET_KEY": "é" * 15})[0]


def test_a_complete_production_environment_starts(environ: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION.items():
        environ.setenv(name, value)
    app = create_app()
    assert app.config["CONSENT_ENV"] == "production"
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["RATELIMIT_STORAGE_URI"] == PRODUCTION["RATELIMIT_STORAGE_URI"]


def test_every_problem_is_reported_at_once_one_line_each(environ: pytest.MonkeyPatch) -> None:
    error = refusal(environ, {"CONSENT_ENV": "production", "OUTBOX_CLAIM_TIMEOUT_S": "soon"})
    named = [re.match(r"[A-Z_]+", problem)[0] for problem in error.problems]  # type: ignore[index]
    assert named == [
        "OUTBOX_CLAIM_TIMEOUT_S",
        "DATABASE_URL",
        "DRAMATIQ_BROKER_URL",
        "RATELIMIT_STORAGE_URI",
        "SMTP_URL",
        "PUBLIC_BASE_URL",
        "SECRET_KEY",
        "SUPPRESSION_KEY",
    ]
    assert len(str(error).splitlines()) == 1 + len(named)


OPT_OUTS = [
    ({"DATABASE_URL": "sqlite:////srv/consent.db"}, "ALLOW_SQLITE_IN_PRODUCTION"),
    ({"DATABASE_URL": ""}, "ALLOW_SQLITE_IN_PRODUCTION"),
    ({"DRAMATIQ_BROKER_URL": ""}, "ALLOW_INPROCESS_WORKER_IN_PRODUCTION"),
    ({"RATELIMIT_STORAGE_URI": "memory://"}, "ALLOW_MEMORY_RATELIMITS_IN_PRODUCTION"),
    ({"SMTP_URL": ""}, "ALLOW_MAIL_FOLDER_IN_PRODUCTION"),
    ({"PUBLIC_BASE_URL": "http://intranet:8000"}, "ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION"),
]


@pytest.mark.parametrize(("change", "opt_out"), OPT_OUTS)
def test_each_opt_out_lifts_its_refusal_and_no_other(change: dict, opt_out: str) -> None:
    env = {**PRODUCTION, **change}
    refused, _ = settings.problems(env)
    assert len(refused) == 1 and opt_out in refused[0]
    assert settings.problems({**env, opt_out: "1"})[0] == []
    others = [o for o in {o for _, o in OPT_OUTS} if o != opt_out]
    assert len(settings.problems({**env, **dict.fromkeys(others, "1")})[0]) == 1


def test_an_unset_public_base_url_has_no_opt_out() -> None:
    env = {**without("PUBLIC_BASE_URL"), "ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION": "1"}
    assert settings.problems(env)[0][0].startswith("PUBLIC_BASE_URL: is not set")


def test_development_and_testing_need_none_of_it(environ: pytest.MonkeyPatch) -> None:
    for environment in settings.DEVELOPMENT_ENVS:
        assert settings.problems({"CONSENT_ENV": environment}) == ([], [])


def test_an_unknown_environment_is_refused(environ: pytest.MonkeyPatch) -> None:
    error = refusal(environ, {**PRODUCTION, "CONSENT_ENV": "staging"})
    assert error.problems == [
        "CONSENT_ENV: must be one of production, development, testing (not 'staging')."
    ]


def test_a_malformed_value_stops_even_a_development_start(environ: pytest.MonkeyPatch) -> None:
    error = refusal(
        environ,
        {"CONSENT_ENV": "testing", "RETENTION_DAILY_AT": "25:00", "INPROCESS_WORKER": "maybe"},
    )
    assert error.problems == [
        "INPROCESS_WORKER: must be 1 or 0 (not 'maybe').",
        "RETENTION_DAILY_AT: must be a time of day HH:MM (UTC) (not '25:00').",
    ]


# Secrets from files -------------------------------------------------------------------


def test_secrets_come_from_files(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = {}
    for name in ("SECRET_KEY", "SUPPRESSION_KEY", "DATABASE_URL", "SMTP_URL"):
        files[name] = tmp_path / name.lower()
        # As `echo` or an editor writes it: the newline is no part of the secret.
        files[name].write_text(PRODUCTION[name] + "\n")
    env = {k: v for k, v in PRODUCTION.items() if k not in files}
    env.update({f"{name}_FILE": str(path) for name, path in files.items()})
    for name, value in env.items():
        environ.setenv(name, value)
    app = create_app()
    assert app.config["SECRET_KEY"] == PRODUCTION["SECRET_KEY"]
    assert app.config["SUPPRESSION_KEY"] == PRODUCTION["SUPPRESSION_KEY"]
    assert app.config["SMTP_URL"] == PRODUCTION["SMTP_URL"]
    assert app.config["SQLALCHEMY_DATABASE_URI"] == (
        "postgresql+psycopg://consent:pw@db.internal:5432/consent"
    )


def test_every_setting_carrying_a_password_may_come_from_a_file() -> None:
    for name in (
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "SUPPRESSION_KEY",
        "DATABASE_URL",
        "SMTP_URL",
        "DRAMATIQ_BROKER_URL",
        "RATELIMIT_STORAGE_URI",
        "BOUNCE_IMAP_URL",
        "POSTMARK_WEBHOOK_AUTH",
    ):
        assert settings.BY_NAME[name].secret, name


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    env = {**without("SECRET_KEY"), "SECRET_KEY_FILE": str(tmp_path / "missing")}
    problems, _ = settings.problems(env)
    assert len(problems) == 1
    assert problems[0].startswith("SECRET_KEY_FILE: cannot read")


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("k" * 40)
    problems, _ = settings.problems({**PRODUCTION, "SECRET_KEY_FILE": str(path)})
    assert problems == ["SECRET_KEY: set both it and SECRET_KEY_FILE; set only one."]


def test_a_malformed_secret_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("mysql://consent:hunter2@db/consent")
    problems, _ = settings.problems({**without("DATABASE_URL"), "DATABASE_URL_FILE": str(path)})
    assert problems[0].startswith("DATABASE_URL_FILE: must start with postgresql://")
    assert "hunter2" not in "".join(problems)


def test_the_broker_url_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "broker"
    path.write_text("amqp://consent:pw@rabbit:5672/\n")
    env = {"DRAMATIQ_BROKER_URL_FILE": str(path)}
    assert settings.value("DRAMATIQ_BROKER_URL", env) == "amqp://consent:pw@rabbit:5672/"


# Names --------------------------------------------------------------------------------


def test_an_old_name_still_works_with_a_warning(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("CONSENT_ENV", "testing")
    environ.setenv("CONSENT_CHANGE_FEED_KEEP_DAYS", "30")
    with pytest.warns(settings.DeprecatedSetting, match="rename it CHANGE_FEED_KEEP_DAYS"):
        app = create_app({"SECRET_KEY": "x", "SUPPRESSION_KEY": "y", "TESTING": True})
    assert app.config["CHANGE_FEED_KEEP_DAYS"] == 30


def test_the_new_name_wins_over_the_old(environ: pytest.MonkeyPatch) -> None:
    env = {
        "CONSENT_ENV": "testing",
        "WEBHOOK_RETRY_HOURS": "48",
        "CONSENT_WEBHOOK_RETRY_HOURS": "24",
    }
    loaded = settings.load(env)
    assert loaded.values["WEBHOOK_RETRY_HOURS"] == 48
    assert loaded.deprecations == [
        "CONSENT_WEBHOOK_RETRY_HOURS is ignored: WEBHOOK_RETRY_HOURS is set; "
        "remove CONSENT_WEBHOOK_RETRY_HOURS."
    ]


def test_old_names_keep_their_json_values() -> None:
    loaded = settings.load({"CONSENT_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"})
    assert loaded.values["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is True


def test_an_undeclared_flask_setting_still_comes_from_consent_prefix(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("CONSENT_ENV", "testing")
    environ.setenv("CONSENT_PERMANENT_SESSION_LIFETIME", "3600")
    app = create_app({"SECRET_KEY": "x", "SUPPRESSION_KEY": "y", "TESTING": True})
    assert app.config["PERMANENT_SESSION_LIFETIME"] == 3600


def test_names_follow_one_scheme() -> None:
    for setting in settings.SETTINGS:
        assert re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", setting.name), setting.name
        # NAME_FILE is the file a secret NAME is read from (paths of other files,
        # e.g. SMTP_CA_FILE, are not secrets and name no setting).
        assert not (setting.name.endswith("_FILE") and setting.name[:-5] in settings.BY_NAME)
        # A duration says its unit.
        if "seconds" in setting.meaning.split(" ")[:1] or setting.name.endswith("_SECONDS"):
            assert setting.name.endswith("_S"), setting.name
        assert setting.name == "CONSENT_ENV" or not setting.name.startswith("CONSENT_")
        if setting.opt_out:
            assert re.fullmatch(r"ALLOW_[A-Z_]+_IN_PRODUCTION", setting.opt_out)
            assert settings.BY_NAME[setting.opt_out].default is False


# Every variable read is declared ------------------------------------------------------

CODE = [ROOT / "app.py", ROOT / "extensions.py", ROOT / "worker.py"] + [
    path
    for package in ("kernel", "crm", "consent", "mailing")
    for path in (ROOT / package).rglob("*.py")
]
# Keys the app sets itself (or Flask's and its extensions' own), not variables.
NOT_VARIABLES = {
    "API_TITLE",
    "OPENAPI_JSON_PATH",
    "OPENAPI_URL_PREFIX",
    "POLICY",
    "SQLALCHEMY_DATABASE_URI",
    "SQLALCHEMY_ENGINE_OPTIONS",
    "WTF_CSRF_ENABLED",
    "TESTING",
}


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = [
        path.relative_to(ROOT).as_posix()
        for path in CODE
        if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text())
    ]
    assert readers == ["kernel/settings/reading.py"]


def test_every_configuration_key_the_code_reads_is_declared() -> None:
    read = set()
    for path in CODE:
        read |= set(re.findall(r"config(?:\.get\(|\[)\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    undeclared = read - set(settings.BY_KEY) - NOT_VARIABLES
    assert not undeclared, f"declare these in kernel/settings/variables.py: {sorted(undeclared)}"


# The README ---------------------------------------------------------------------------


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings.readme_table(readme) == settings.markdown_table(), (
        "README.md's configuration table differs from kernel/settings/variables.py; "
        "run `flask --app app settings table --readme README.md`"
    )


def test_the_table_lists_every_setting_and_its_opt_out() -> None:
    table = settings.markdown_table()
    for setting in settings.SETTINGS:
        assert f"| `{setting.name}`" in table
        if setting.opt_out:
            assert f"opt out: `{setting.opt_out}`" in table


def test_the_configuration_doc_names_every_opt_out() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for setting in settings.SETTINGS:
        if setting.opt_out:
            assert f"`{setting.opt_out}=1`" in doc, setting.opt_out


# flask settings check -----------------------------------------------------------------


def test_settings_check_lists_the_problems_and_fails(environ: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(settings_cli, ["check"], env=without("SMTP_URL"))
    assert result.exit_code == 1
    assert "- SMTP_URL: is not set" in result.output


def test_settings_check_passes_a_complete_production_environment(
    environ: pytest.MonkeyPatch,
) -> None:
    result = CliRunner().invoke(settings_cli, ["check"], env=PRODUCTION)
    assert result.exit_code == 0, result.output


def test_settings_table_rewrites_a_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{settings.TABLE_START}\nold\n{settings.TABLE_END}\n\nafter\n")
    result = CliRunner().invoke(settings_cli, ["table", "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert settings.readme_table(text) == settings.markdown_table()
    assert text.endswith("\n\nafter\n")


@pytest.mark.parametrize(
    "old", ["RETENTION_BATCH_PAUSE", "CONSENT_RETENTION_BATCH_PAUSE", "RETENTION_BATCH_PAUSE_S"]
)
def test_a_renamed_variable_reaches_the_same_configuration_key(old: str) -> None:
    loaded = settings.load({old: "0.5"})
    assert loaded.values["RETENTION_BATCH_PAUSE"] == 0.5
    renamed = old != "RETENTION_BATCH_PAUSE_S"
    assert loaded.deprecations == (
        [f"{old} is deprecated; rename it RETENTION_BATCH_PAUSE_S."] if renamed else []
    )


def test_old_names_keep_their_json_lists() -> None:
    loaded = settings.load({"CONSENT_SIGNUP_ALLOWED_ORIGINS": '["https://a.se/", "https://B.se"]'})
    assert loaded.values["SIGNUP_ALLOWED_ORIGINS"] == ["https://a.se", "https://b.se"]


def test_the_app_checks_join_the_same_list(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    error = refusal(
        environ,
        {
            **PRODUCTION,
            "SMTP_URL": "",
            "POLICY_FILE": str(tmp_path / "missing.toml"),
            "WEBHOOK_RETRY_HOURS": "100",
            "CHANGE_FEED_KEEP_DAYS": "1",
        },
    )
    assert [problem.split(" ")[0].rstrip(":") for problem in error.problems] == [
        "SMTP_URL",
        "WEBHOOK_RETRY_HOURS",
        "POLICY_FILE",
    ]


def test_flask_finds_the_settings_command_without_the_app() -> None:
    """``flask settings check`` must answer when the app itself refuses to
    start: Flask loads ``flask.commands`` entry points before the app."""
    import importlib
    import tomllib

    import click

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["flask.commands"]["settings"]
    module, name = target.split(":")
    command = getattr(importlib.import_module(module), name)
    assert command is settings_cli
    # A plain click group: Flask's AppGroup would push an app context, building the app.
    assert type(command) is click.Group


def test_a_file_for_a_setting_that_is_no_secret_is_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("https://consent.example.com")
    problems, _ = settings.problems({**PRODUCTION, "PUBLIC_BASE_URL_FILE": str(path)})
    assert problems == [
        "PUBLIC_BASE_URL_FILE: PUBLIC_BASE_URL is not a secret and is not read from a file; "
        "set PUBLIC_BASE_URL itself."
    ]
