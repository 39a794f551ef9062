"""Commands a script can run (issue 22 item 4): ``flask permissions check`` answers
with its exit code; ``flask contacts import`` and ``flask retention run`` draw a
progress bar on a terminal and print only their result otherwise."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = "email,name,company,country,language\n"


def check(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["permissions", "check", *args])


@pytest.fixture
def customer(app: Any, tmp_path: Path) -> str:
    path = tmp_path / "customers.csv"
    path.write_text(HEADER + "anna@kund.se,Anna,Kund AB,SE,sv\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(
        args=["contacts", "import", str(path), "--basis", "customer", "--source", "CRM"]
    )
    assert result.exit_code == 0, result.output
    return "anna@kund.se"


def test_permissions_check_exits_0_when_allowed(app, customer) -> None:
    result = check(app, customer, "--topic", "events")
    assert result.exit_code == 0, result.output
    assert "ALLOWED" in result.output


def test_permissions_check_exits_1_when_not_allowed(app, customer) -> None:
    refused = check(app, "nobody@example.com", "--topic", "events")
    assert refused.exit_code == 1, refused.output
    assert "NOT ALLOWED" in refused.output
    as_json = check(app, "nobody@example.com", "--topic", "events", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)[0]["allowed"] is False


def test_permissions_check_exits_2_when_nothing_could_be_decided(app) -> None:
    unknown_topic = check(app, "anna@kund.se", "--topic", "no-such-topic")
    assert unknown_topic.exit_code == 2, unknown_topic.output
    bad_date = check(app, "anna@kund.se", "--as-of", "yesterday")
    assert bad_date.exit_code == 2


# On a terminal and off it: real processes, a real pseudo-terminal --------------------


@pytest.fixture(scope="module")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite file for ``flask`` processes started by these tests."""
    folder = tmp_path_factory.mktemp("cli")
    env = {
        **os.environ,
        "CONSENT_ENV": "testing",
        "SECRET_KEY": "cli-test-secret-key-0123456789abcdef",
        "SUPPRESSION_KEY": "cli-test-suppression-key-0123456789",
        "DATABASE_URL": f"sqlite:///{folder / 'consent.db'}",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "80",
    }
    env.pop("DRAMATIQ_BROKER_URL", None)
    done = subprocess.run(flask("db", "upgrade"), env=env, cwd=folder, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    (folder / "list.csv").write_text(
        HEADER + "".join(f"p{i}@kund.se,P {i},Kund AB,SE,sv\n" for i in range(50)),
        encoding="utf-8",
    )
    env["TEST_FOLDER"] = str(folder)
    return env


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), *args]


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=env["TEST_FOLDER"]
    )
    os.close(follower)
    output = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        output += data
    os.close(leader)
    return process.wait(timeout=120), output.decode(errors="replace")


def piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=env["TEST_FOLDER"], capture_output=True, text=True, timeout=120
    )


IMPORT = ("contacts", "import", "list.csv", "--basis", "customer", "--source", "CRM")


def test_contacts_import_draws_a_bar_on_a_terminal(service_env) -> None:
    code, output = on_terminal(flask(*IMPORT), service_env)
    assert code == 0, output
    assert "Importing" in output and "100%" in output
    assert "created" in output


def test_contacts_import_prints_only_its_report_when_not_on_a_terminal(service_env) -> None:
    done = piped(flask(*IMPORT), service_env)
    assert done.returncode == 0, done.stderr
    assert "Importing" not in done.stderr and "%" not in done.stderr
    assert "unchanged" in done.stdout
    as_json = piped(flask(*IMPORT, "--json"), service_env)
    assert json.loads(as_json.stdout)["unchanged"] == 50
    assert "Importing" not in as_json.stderr


def test_retention_run_draws_a_bar_on_a_terminal_and_is_quiet_otherwise(service_env) -> None:
    code, output = on_terminal(flask("retention", "run"), service_env)
    assert code == 0, output
    assert "Retention" in output and "Retention run" in output

    done = piped(flask("retention", "run"), service_env)
    assert done.returncode == 0, done.stderr
    assert "Retention " not in done.stderr
    assert done.stdout.startswith("Retention run")
    as_json = piped(flask("retention", "run", "--json"), service_env)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["status"] == "completed"
