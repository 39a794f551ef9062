"""Marshmallow schemas for the staff pages' HTML forms (crm: sign-in, users, tokens)."""

from __future__ import annotations

from datetime import date
from typing import Any

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from kernel.errors import N_
from kernel.i18n import LANGUAGES
from kernel.inputs import MAX_ROW_ID
from kernel.models import Role
from kernel.pages import FormSchema

ROLES = [r.value for r in Role]


class SignInForm(FormSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    next = fields.String(load_default=None, validate=validate.Length(max=500))


class LanguageForm(FormSchema):
    lang = fields.String(required=True, validate=validate.OneOf(LANGUAGES))
    next = fields.String(load_default=None, validate=validate.Length(max=500))


class UserCreateForm(FormSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    name = fields.String(load_default=None, validate=validate.Length(max=200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    password = fields.String(required=True, validate=validate.Length(min=10, max=1000))


class RoleForm(FormSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ActiveForm(FormSchema):
    active = fields.Boolean(required=True)


class TokenCreateForm(FormSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    # Days until the token expires; empty: until revoked.
    expires_in_days = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=3660)
    )

    @pre_load
    def _empty_is_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if not str(data.get("expires_in_days", "")).strip():
            data = {k: v for k, v in data.items() if k != "expires_in_days"}
        return data


_DAY = validate.Range(min=date(1900, 1, 1), max=date(2999, 12, 31))


class AuditQuery(FormSchema):
    """The audit log's filters (all optional) and its page cursor."""

    who = fields.String(load_default=None, validate=validate.Length(max=200))
    action = fields.String(load_default=None, validate=validate.Length(max=64))
    # A row id: a larger number names no row (and SQLite cannot bind one over 2**63).
    contact = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ROW_ID))
    # ``from`` is a Python keyword: the form's name, not the attribute's.
    on_or_after = fields.Date(load_default=None, data_key="from", validate=_DAY)
    on_or_before = fields.Date(load_default=None, data_key="to", validate=_DAY)
    # The signed cursor the previous page gave (crm.audit_log), checked there.
    before = fields.String(load_default=None, validate=validate.Length(max=200))
    delimiter = fields.String(load_default=",", validate=validate.OneOf([",", ";"]))

    @pre_load
    def _blank_is_absent(self, data: Any, **_: Any) -> Any:
        """An empty box of the filter form means no filter, not an invalid one."""
        return {k: v for k, v in data.items() if v != ""}

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("on_or_after"), data.get("on_or_before")
        if start and end and start > end:
            raise ValidationError("The range starts after it ends.", "to")


class ChecklistDoneForm(FormSchema):
    """An admin marks a purge held elsewhere done (R16-R18)."""

    rule = fields.String(required=True, validate=validate.Length(min=1, max=64))
    done_through = fields.Date(
        required=True, validate=validate.Range(min=date(1900, 1, 1), max=date(2999, 12, 31))
    )
    as_of = fields.Date(
        load_default=None, validate=validate.Range(min=date(1900, 1, 1), max=date(2999, 12, 31))
    )


class OwnPasswordForm(FormSchema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    new_password = fields.String(required=True, validate=validate.Length(min=10, max=1000))
    new_password_again = fields.String(required=True, validate=validate.Length(max=1000))

    @validates_schema
    def _same_twice(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("new_password") != data.get("new_password_again"):
            raise ValidationError(N_("The two new passwords differ."), "new_password_again")


class TimeZoneForm(FormSchema):
    # Checked against zoneinfo by crm.accounts.set_own_time_zone.
    time_zone = fields.String(required=True, validate=validate.Length(min=1, max=64))


class ResetPasswordForm(FormSchema):
    password = fields.String(required=True, validate=validate.Length(min=10, max=1000))
    password_again = fields.String(required=True, validate=validate.Length(max=1000))

    @validates_schema
    def _same_twice(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("password") != data.get("password_again"):
            raise ValidationError(N_("The two passwords differ."), "password_again")


class ForgotPasswordForm(FormSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))


class CodeForm(FormSchema):
    # Six digits; spaces an authenticator shows ("123 456") are allowed.
    code = fields.String(required=True, validate=validate.Regexp(r"^[0-9 ]{6,8}$"))


class EnrolForm(CodeForm):
    enrolment = fields.String(required=True, validate=validate.Length(min=1, max=500))
