"""The shared kernel: what every domain package uses and none of them owns.

Errors, who may do what (roles, actors, staff accounts and API tokens),
email addresses, countries and languages, the staff pages' translations,
timestamps, formula-safe CSV, the checks every request's input passes and
the declaration of every environment variable (``kernel.settings``).
It sits below ``crm``, ``consent`` and ``mailing`` and imports none of them
(docs/architecture.md).
"""
