"""Where the service's files are: templates, static files, migrations and the
example policies.

In a checkout they sit at the repository root, beside ``app.py``. The wheel
ships them inside this package (pyproject.toml maps ``service_files.templates``
to ``templates/`` and so on), because a wheel's top-level ``templates`` or
``migrations`` folder would land in site-packages beside every other
project's. ``root()`` answers for both, so that ``pip install .`` works from
any directory.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def root() -> Path:
    """The folder that holds ``templates/``, ``static/``, ``migrations/`` and ``policies/``."""
    if (_HERE / "templates" / "base.html").is_file():
        return _HERE
    return _HERE.parent


def templates() -> Path:
    return root() / "templates"


def static() -> Path:
    return root() / "static"


def migrations() -> Path:
    return root() / "migrations"


def example_policies() -> Path:
    """The example rule sets: ``marketing/*.toml`` and ``retention/*.toml``."""
    return root() / "policies"


def translations() -> Path:
    """The gettext catalogs: ``translations/<lang>/LC_MESSAGES/messages.po``."""
    return root() / "translations"
