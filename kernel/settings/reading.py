"""Reading the variables: each under its name, its old names, or its file."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.settings.declaration import (
    LEGACY_PREFIX,
    DeprecatedSetting,
    Setting,
    SettingsError,
)
from kernel.settings.variables import BY_NAME, SETTINGS


@dataclass
class Loaded:
    """The values read, and what was wrong with the variables."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    deprecations: list[str] = field(default_factory=list)


def _read_file(variable: str, path: str, problems: list[str]) -> str | None:
    try:
        # A file written by an editor or `echo` ends in a newline that is no
        # part of the secret.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problems.append(f"{variable}: cannot read {path!r} ({exc.strerror or exc}).")
    except UnicodeDecodeError:
        problems.append(f"{variable}: {path!r} is not UTF-8 text.")
    return None


def _raw(setting: Setting, environ: Mapping[str, str], loaded: Loaded) -> tuple[str, str] | None:
    """The text set for ``setting`` and the variable it came from, or None."""
    if not setting.secret and environ.get(f"{setting.name}_FILE"):
        loaded.problems.append(
            f"{setting.name}_FILE: {setting.name} is not a secret and is not read from a file; "
            f"set {setting.name} itself."
        )
    direct = environ.get(setting.name) or None
    from_file = environ.get(f"{setting.name}_FILE") or None if setting.secret else None
    if direct is not None and from_file is not None:
        loaded.problems.append(
            f"{setting.name}: set both it and {setting.name}_FILE; set only one."
        )
        return None
    if from_file is not None:
        text = _read_file(f"{setting.name}_FILE", from_file, loaded.problems)
        return None if text is None else (text, f"{setting.name}_FILE")
    old = [name for name in setting.names_read()[1:] if environ.get(name)]
    for name in old:
        if direct is not None:
            loaded.deprecations.append(f"{name} is ignored: {setting.name} is set; remove {name}.")
        else:
            loaded.deprecations.append(f"{name} is deprecated; rename it {setting.name}.")
    if direct is not None:
        return direct, setting.name
    if old:
        return environ[old[0]], old[0]
    return None


def _legacy_json(raw: str) -> str:
    # CONSENT_<NAME> values were read as JSON (Flask's from_prefixed_env):
    # "true" was True and '"02:30"' a string; take them as they were meant.
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return raw


def load(environ: Mapping[str, str] | None = None) -> Loaded:
    """Every declared setting from ``environ`` (default: the process's), typed;
    every malformed or unreadable variable is one problem, naming it."""
    environ = os.environ if environ is None else environ
    loaded = Loaded()
    for setting in SETTINGS:
        found = _raw(setting, environ, loaded)
        if found is None:
            loaded.values[setting.config_key] = _copy(setting.default)
            continue
        raw, variable = found
        if variable.startswith(LEGACY_PREFIX) and variable != setting.name:
            raw = _legacy_json(raw)
        try:
            loaded.values[setting.config_key] = setting.parse(raw)
        except ValueError as exc:
            shown = "" if setting.secret else f" (not {raw!r})"
            loaded.problems.append(f"{variable}: {exc}{shown}.")
            loaded.values[setting.config_key] = _copy(setting.default)
    return loaded


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting's value, its default when unset or malformed (``load``, at
    the app's start, reports the problem)."""
    setting = BY_NAME[name]
    environ = os.environ if environ is None else environ
    found = _raw(setting, environ, Loaded())
    if found is None:
        return _copy(setting.default)
    try:
        return setting.parse(found[0])
    except ValueError:
        return _copy(setting.default)


def checked_value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting's value for a process that reads it alone (gunicorn's
    configuration): a malformed value raises ``SettingsError`` naming the variable."""
    setting = BY_NAME[name]
    environ = os.environ if environ is None else environ
    loaded = Loaded()
    found = _raw(setting, environ, loaded)
    if found is not None and not loaded.problems:
        raw, variable = found
        try:
            return setting.parse(raw)
        except ValueError as exc:
            shown = "" if setting.secret else f" (not {raw!r})"
            loaded.problems.append(f"{variable}: {exc}{shown}.")
    if loaded.problems:
        raise SettingsError(loaded.problems)
    return _copy(setting.default)


def warn_deprecations(messages: Iterable[str]) -> None:
    for message in messages:
        warnings.warn(message, DeprecatedSetting, stacklevel=3)


def legacy_flask_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``CONSENT_<NAME>`` for any Flask or extension setting not declared here
    (e.g. ``CONSENT_PERMANENT_SESSION_LIFETIME=3600``), read as JSON the way
    Flask's ``from_prefixed_env`` does."""
    environ = os.environ if environ is None else environ
    declared = {name for s in SETTINGS for name in s.names_read()}
    declared |= {LEGACY_PREFIX + s.config_key for s in SETTINGS}
    found: dict[str, Any] = {}
    for variable in sorted(environ):
        if not variable.startswith(LEGACY_PREFIX) or variable in declared:
            continue
        if variable.endswith("_FILE") and variable.removesuffix("_FILE") in declared:
            continue
        raw = environ[variable]
        try:
            found[variable.removeprefix(LEGACY_PREFIX)] = json.loads(raw)
        except ValueError:
            found[variable.removeprefix(LEGACY_PREFIX)] = raw
    return found
