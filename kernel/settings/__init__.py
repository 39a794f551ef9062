"""Every environment variable the service reads, declared once.

Each ``Setting`` says its name, type, default, meaning, what production
requires of it, whether it is a secret (then it may also come from a file,
``<NAME>_FILE``, the way container secrets are mounted) and which variable
opts a deliberate single-host install out of a production requirement
(``variables``). ``load`` reads them all and reports every problem at once
(``reading``); ``production_problems`` is the list of reasons a production
start is refused (``production``); ``markdown_table`` is the README's
configuration table (``table``, ``flask settings table``).
docs/configuration.md explains the naming scheme and the refusals.

Imports nothing from the service: ``extensions.py`` reads the broker's
settings from here at import time, before any package exists.
"""

from kernel.settings.declaration import (
    DEVELOPMENT_ENVS,
    ENVIRONMENTS,
    LEGACY_PREFIX,
    MIN_KEY_BYTES,
    DeprecatedSetting,
    Setting,
    SettingsError,
)
from kernel.settings.production import (
    is_development,
    problems,
    production_problems,
    startup_problems,
)
from kernel.settings.reading import (
    Loaded,
    checked_value,
    legacy_flask_settings,
    load,
    value,
    warn_deprecations,
)
from kernel.settings.table import (
    TABLE_END,
    TABLE_START,
    markdown_table,
    readme_table,
    replace_readme_table,
)
from kernel.settings.variables import BY_KEY, BY_NAME, SETTINGS

__all__ = [
    "BY_KEY",
    "BY_NAME",
    "DEVELOPMENT_ENVS",
    "ENVIRONMENTS",
    "LEGACY_PREFIX",
    "MIN_KEY_BYTES",
    "SETTINGS",
    "TABLE_END",
    "TABLE_START",
    "DeprecatedSetting",
    "Loaded",
    "Setting",
    "SettingsError",
    "checked_value",
    "is_development",
    "legacy_flask_settings",
    "load",
    "markdown_table",
    "problems",
    "production_problems",
    "readme_table",
    "replace_readme_table",
    "startup_problems",
    "value",
    "warn_deprecations",
]
