"""Every deployment file starts the same four processes with the same commands.

The Dockerfile, compose.yaml, the Procfile and the systemd units are four
descriptions of one service; a command changed in one and not the others
(a renamed gunicorn configuration, a scheduler command) would leave one way of
deploying broken with nothing else failing. No container engine runs here
(docs/deployment.md), so this is what checks compose.yaml and the Dockerfile.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "web": ["gunicorn", "-c", "python:gunicorn_conf", "app:create_app()"],
    "worker": ["dramatiq", "worker"],
    "scheduler": ["flask", "--app", "app", "scheduler", "run"],
    "migrate": ["flask", "--app", "app", "db", "upgrade"],
}


def _starts_with(command: list[str], expected: list[str]) -> bool:
    return command[: len(expected)] == expected


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = dict(line.split(":", 1) for line in lines if line.strip())
    return {name.strip(): shlex.split(command) for name, command in entries.items()}


def _units() -> dict[str, list[str]]:
    found = {}
    for unit in (ROOT / "deploy" / "systemd").glob("consent-*.service"):
        match = re.search(r"^ExecStart=(.+)$", unit.read_text(), re.MULTILINE)
        assert match is not None, unit.name
        argv = shlex.split(match.group(1))
        found[unit.stem.removeprefix("consent-")] = [Path(argv[0]).name, *argv[1:]]
    return found


def _dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert entrypoint and cmd, "ENTRYPOINT and CMD in exec (JSON) form"
    return json.loads(entrypoint.group(1)) + json.loads(cmd.group(1))


def _compose() -> dict[str, list[str]]:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    image = _dockerfile()
    found = {}
    for name, service in services.items():
        if "build" not in service:
            continue  # PostgreSQL, Redis, the mail catcher
        entrypoint = service.get("entrypoint")
        command = service.get("command")
        if entrypoint is None:
            found[name] = image if command is None else image[:-1] + list(command)
        else:
            found[name] = list(entrypoint) + list(command or [])
    return found


@pytest.mark.parametrize("source", ["Procfile", "compose.yaml", "systemd"])
def test_each_process_is_started_by_its_agreed_command(source: str) -> None:
    described = {
        "Procfile": lambda: {"migrate" if k == "release" else k: v for k, v in _procfile().items()},
        "compose.yaml": _compose,
        "systemd": _units,
    }[source]()
    assert set(described) == set(COMMANDS), source
    for process, expected in COMMANDS.items():
        assert _starts_with(described[process], expected), (source, process, described[process])


def test_the_image_runs_gunicorn_with_the_shipped_configuration() -> None:
    assert _dockerfile() == COMMANDS["web"]


def test_the_image_runs_as_a_user_without_privileges_and_checks_its_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\S+)$", final_stage, re.MULTILINE)
    assert user is not None and user.group(1) not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", final_stage, re.MULTILINE)
    # The image is built by the script CI runs (tests/deploy/test_installed_wheel.py).
    assert "RUN deploy/build.sh /opt/consent" in text
