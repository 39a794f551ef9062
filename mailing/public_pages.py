"""Public pages: signup, confirmation, unsubscribe, one-click, preference centre,
the undo of a signup, privacy requests.

None of them uses a session or a CSRF token: a signup form lives on other
sites, and the links are opened from mail clients. Posts from a browser must
come from our own origin, or (signup only) from an origin registered for the
form they name; a signed token in the URL is the proof that the person
received our email. GET and HEAD never change anything, so mail scanners that
fetch every link are harmless. A page with a token in its URL keeps it to
itself: no Referer leaves it and no other site may frame it.

A refusal a person can meet (a form posted from elsewhere, a form we do not
know, too many attempts, a link that ran out) is a page in their language:
the form's, or the contact's behind a link.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask_limiter.util import get_remote_address
from marshmallow import ValidationError
from werkzeug.exceptions import TooManyRequests

from consent.evidence import Evidence, form_wording, shown_version, signup_evidence
from consent.policies import current_version_label
from consent.subscriptions import Scope, Signup
from consent.tokens import LinkExpired, LinkInvalid, Purpose
from consent.topics import HOSTED_FORM_ID, SignupForm, UnknownForm, current_policy, names_in_text
from extensions import csrf, db, limiter
from kernel import i18n
from kernel.addresses import domain_of, keyed_hash, mailbox_of, normalise_email
from kernel.errors import InvalidInput, NotPermitted
from kernel.i18n import translate as _
from mailing import privacy_requests, subscription_flows
from mailing.messages import brand_name, page_language, preferences_url, read_message
from mailing.schemas import AddressSchema, PrivacyRequestSchema, SignupSchema
from mailing.transport import mail_folder

bp = Blueprint("public", __name__)


# Request helpers ---------------------------------------------------------------------


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def _own_origins() -> set[str | None]:
    return {_origin(current_app.config["PUBLIC_BASE_URL"]), _origin(request.host_url)}


def _form_origins(form: SignupForm) -> set[str | None]:
    """Where ``form`` may be posted from: our own origin, and for a form on other
    sites the origins registered for it (``[forms.<id>] origins``), or, when it
    lists none, ``SIGNUP_ALLOWED_ORIGINS``. The hosted form: our own only, so
    that a copy of its fields elsewhere cannot borrow its wording."""
    allowed = _own_origins()
    if not form.is_hosted:
        listed = form.origins
        allowed |= set(current_app.config["SIGNUP_ALLOWED_ORIGINS"] if listed is None else listed)
    return allowed


class OriginRefused(NotPermitted):
    """A browser posted from a page that is not allowed to post here."""

    code = "origin_not_allowed"


def _posting_origin() -> str | None:
    """The origin of the page that posted, as the browser says (Origin, else Referer).

    A browser writes ``Origin: null`` for a sandboxed frame or a data: URL,
    never an allowed page, but also for a post from a page that sends no
    Referer, as our pages behind a token do (``_keep_the_token_to_this_page``).
    ``Sec-Fetch-Site``, which no page can set, still tells our own page apart:
    ``same-origin`` is us. A browser too old to send it gets the benefit of the
    doubt on a page behind a token only, where the signed link, not the
    origin, is the proof that the person received our email.
    """
    sent = request.headers.get("Origin")
    if sent == "null":
        site = request.headers.get("Sec-Fetch-Site")
        if site == "same-origin":
            return _origin(request.host_url)
        if site is None and "token" in (request.view_args or {}):
            return None  # as a post without Origin: the token decides
        return "null"
    return sent.rstrip("/").lower() if sent else _origin(request.referrer)


def _check_origin(lang: str, allowed: set[str | None] | None = None) -> str | None:
    """A browser tells us which page posted; refuse pages that are not ours (or,
    for a signup, not registered for the form). Returns the posting origin.

    Posts without Origin or Referer (a server, curl) are let through: they
    carry no cookies we would trust anyway, and nothing a browser page could
    make a visitor send.
    """
    origin = _posting_origin()
    if origin is None:
        return None
    allowed = _own_origins() if allowed is None else allowed
    if origin not in allowed and "*" not in allowed:
        g.page_lang = lang
        raise OriginRefused("Forms from this site may not post here.")
    return origin


def _form_data() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidInput("The body must be a JSON object.")
        return body
    data: dict[str, Any] = request.form.to_dict()
    if "topics" in request.form:
        data["topics"] = request.form.getlist("topics")
    return data


def _load(schema: Any, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise InvalidInput("The form is not valid; see fields.", fields=exc.messages) from exc  # type: ignore[arg-type]


def _evidence(language: str, **extra: Any) -> Evidence:
    return Evidence(
        ip_address=request.remote_addr,
        user_agent=(request.user_agent.string or None) and request.user_agent.string[:400],
        language=language,
        **extra,
    )


def _page_url() -> str:
    """The page, without the token in it: the ledger must not keep a working link."""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return current_app.config["PUBLIC_BASE_URL"] + rule


def _honeypot_filled() -> bool:
    """Whether the form's hidden field is filled: a robot's post, answered like
    any other and otherwise ignored by the view.

    Such a post counts toward no limit (Flask-Limiter ``exempt_when``, decided
    before the count): it does nothing, and a robot naming someone's address
    must not use up their limit. Every other post is counted at once, refused
    ones included.
    """
    try:
        value = _form_data().get("website")
    except InvalidInput:
        return False
    return isinstance(value, str) and value != ""


def _browser_language() -> str:
    return page_language(request.accept_languages.best_match(i18n.LANGUAGES))


def _page(template: str, lang: str, status: int = 200, **context: Any) -> Any:
    """A public page in ``lang``, the contact's (or the form's, or the browser's)."""
    i18n.use_language(lang)
    return render_template(template, lang=lang, **context), status


@bp.context_processor
def _brand() -> dict[str, str]:
    return {"brand": brand_name()}


# Refusals, as a person reads them -------------------------------------------------------


def _asked_language() -> str:
    """The language of this request's pages when a refusal comes before the view
    knew better (a rate limit): the registered form's for a signup, else the
    post's ``language``, the page's ``?lang`` or the browser's."""
    known = g.get("page_lang")
    if known:
        return str(known)
    try:
        data = _form_data()
    except InvalidInput:
        data = {}
    posted = _string(data.get("language")) or request.args.get("lang")
    if request.endpoint == "public.subscribe":
        form = current_policy().forms.get(_string(data.get("form_id")) or "")
        if form is not None:
            return page_language(form.language_for(posted))
    return page_language(posted or _browser_language())


def _string(value: Any) -> str | None:
    """A posted field that must be text (a JSON body may hold anything)."""
    return value if isinstance(value, str) and value else None


def _refusal(kind: str, brand: str) -> tuple[str, str]:
    """The title and text of a refusal, in the page's language."""
    if kind == "origin":
        return _("This form cannot be sent from here"), _(
            "To protect the people on our lists, %(brand)s accepts this form only from the "
            "websites it was made for, and the page you used is not one of them. "
            "Nothing was saved.",
            brand=brand,
        )
    if kind == "unknown_form":
        return _("This signup form is not in use"), _(
            "%(brand)s does not recognise the form you filled in, so nothing was saved. "
            "Please let the owner of the website know.",
            brand=brand,
        )
    return _("Too many attempts"), _(
        "%(brand)s received many requests from your connection or for this address in a "
        "short time, so this one was not handled and nothing was saved. "
        "Please wait a while and try again.",
        brand=brand,
    )


def _problem(status: int, code: str, kind: str, *, hint: bool = False) -> Any:
    """A refusal in the asked language: a page for a person, JSON for a script."""
    db.session.rollback()
    lang = _asked_language()
    i18n.use_language(lang)
    title, text = _refusal(kind, brand_name())
    if request.is_json or request.accept_mimetypes.best == "application/json":
        return jsonify(error={"code": code, "message": f"{title}. {text}"}), status
    hint_url = url_for("public.subscribe", lang=lang) if hint else None
    return _page(
        "public/problem.html",
        lang,
        status,
        title=title,
        text=text,
        hint=_("You can sign up on our own signup page instead."),
        hint_url=hint_url,
    )


@bp.errorhandler(OriginRefused)
def _origin_refused(exc: OriginRefused) -> Any:
    return _problem(403, exc.code, "origin", hint=request.endpoint == "public.subscribe")


@bp.errorhandler(UnknownForm)
def _unknown_form(exc: UnknownForm) -> Any:
    return _problem(422, exc.code, "unknown_form", hint=True)


@bp.errorhandler(TooManyRequests)
def _rate_limited(exc: TooManyRequests) -> Any:
    body, status = _problem(429, "rate_limited", "rate_limited")
    response = current_app.make_response((body, status))
    # Keep what the limiter says about itself (Retry-After, X-RateLimit-*).
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def _language_behind(exc: LinkExpired) -> str | None:
    if exc.purpose is Purpose.VERIFY_ADDRESS:
        return privacy_requests.language_behind(exc.payload)
    if exc.purpose is not None:
        return subscription_flows.language_behind(exc.purpose, exc.payload)
    return None


@bp.errorhandler(LinkInvalid)
def _link_problem(exc: LinkInvalid) -> Any:
    db.session.rollback()
    # A genuine link that ran out still says whose it was: speak their language.
    # A tampered one names nobody: the browser's.
    lang = (_language_behind(exc) if isinstance(exc, LinkExpired) else None) or (
        _browser_language()
    )
    if isinstance(exc, LinkExpired) and request.endpoint == "public.confirm":
        token = (request.view_args or {}).get("token", "")
        return _page("public/link_expired.html", lang, 410, token=token)
    return _page("public/link_invalid.html", lang, 400)


@bp.after_request
def _keep_the_token_to_this_page(response: Any) -> Any:
    """A page whose URL holds a signed token (confirm, unsubscribe, preferences,
    privacy verification, undo) must not hand it on: no Referer to the sites it
    links to, and no framing by another site (clickjacking the button that
    confirms, unsubscribes or undoes)."""
    if "token" in (request.view_args or {}):
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        policy = response.headers.get("Content-Security-Policy")
        ancestors = "frame-ancestors 'none'"
        response.headers["Content-Security-Policy"] = (
            f"{policy}; {ancestors}"
            if policy and "frame-ancestors" not in policy
            else policy or ancestors
        )
    return response


# The limits of every public form that sends mail ---------------------------------------

# Forms whose post is about the address behind the link in their URL.
_LINK_PURPOSES = {
    "public.preferences": Purpose.PREFERENCES,
    "public.renew_confirmation": Purpose.CONFIRM,
}


def _named_address() -> str | None:
    """The normalised address a post would send mail to: the one typed into the
    form, or the one behind the link in the URL. None for a malformed address or
    a link that does not work (those posts change nothing; the per-client limit
    still counts them). Read once per request."""
    if "named_address" not in g:
        purpose = _LINK_PURPOSES.get(request.endpoint or "")
        address: str | None
        if purpose is not None:
            token = (request.view_args or {}).get("token", "")
            address = subscription_flows.address_behind_link(purpose, token)
        else:
            try:
                raw = _form_data().get("email", "")
                address = normalise_email(raw) if isinstance(raw, str) else None
            except InvalidInput:
                address = None
        g.named_address = address
    return g.named_address


def _mailbox_key() -> str:
    """Rate-limit key: the mailbox the post would mail (``anna+1@`` and ``Anna+2@``
    are both ``anna@``), as a keyed hash, never the address."""
    address = _named_address()
    mailbox = keyed_hash(mailbox_of(address).casefold() if address else "-")
    # With the client: a stranger posting someone's address must not use up
    # that person's allowance (issue 18, item 10); mail into the mailbox stays
    # bounded whatever the clients by mailing.outbox.mailbox_may_receive.
    return f"mailbox:{mailbox}|{get_remote_address()}"


def _domain_key() -> str:
    """Rate-limit key: the recipient domain, for many mailboxes of one domain
    (a catch-all, or a company's people signed up one by one)."""
    address = _named_address()
    return "domain:" + keyed_hash(domain_of(address) if address else "-")


def _ip_limit() -> str:
    return current_app.config["SIGNUP_LIMIT_PER_IP"]


def _address_limit() -> str:
    return current_app.config["SIGNUP_LIMIT_PER_ADDRESS"]


def _domain_limit() -> str:
    return current_app.config["SIGNUP_LIMIT_PER_DOMAIN"]


# Shared by every form below: a new form, or a new sub-address, buys no new
# allowance (issue 18: 180 emails into one mailbox in 36 s from four clients).
_PER_CLIENT = limiter.shared_limit(
    _ip_limit, scope="mail-forms:client", methods=["POST"], exempt_when=_honeypot_filled
)
_PER_MAILBOX = limiter.shared_limit(
    _address_limit,
    scope="mail-forms:mailbox",
    key_func=_mailbox_key,
    methods=["POST"],
    exempt_when=_honeypot_filled,
)
_PER_DOMAIN = limiter.shared_limit(
    _domain_limit,
    scope="mail-forms:domain",
    key_func=_domain_key,
    methods=["POST"],
    exempt_when=_honeypot_filled,
)


def _sends_mail(view: Callable[..., Any]) -> Callable[..., Any]:
    """The rate limits of a public form whose post can send an email: per client
    address, per mailbox and per recipient domain, counted together over all
    such forms. Behind them the outbox allows one such email per mailbox per
    ten minutes (``mailing.outbox.mailbox_may_receive``), which holds even when
    the limiter's store is down."""
    return _PER_CLIENT(_PER_MAILBOX(_PER_DOMAIN(view)))


# Subscribe -----------------------------------------------------------------------------


@bp.route("/subscribe", methods=["GET", "POST"])
@_sends_mail
def subscribe() -> Any:
    if request.method != "POST":  # GET and HEAD only read
        return _hosted_form()
    arrived = time.monotonic()
    raw = _form_data()
    # The form must be registered (R23): it, not the post, says what was shown.
    form = current_policy().form(_string(raw.get("form_id")))
    form_lang = form.language_for(_string(raw.get("language")))
    lang = page_language(form_lang)
    g.page_lang = lang
    origin = _check_origin(lang, _form_origins(form))
    data = _load(SignupSchema(), raw)
    topics = form.check_topics(data["topics"])
    if not data["website"]:  # the honeypot is empty: a person
        subscription_flows.subscribe(
            _signup(data, form_lang, topics),
            _signup_evidence(data, form, form_lang, topics, origin),
        )
    _answer_no_sooner_than(arrived + current_app.config["SIGNUP_MIN_SECONDS"])
    i18n.use_language(lang)
    message = _(
        "Thank you. If the address needs to be confirmed, we have sent an email to it. "
        "Open it and follow the link to confirm. Nothing is sent until you do."
    )
    if request.is_json:
        return jsonify(status="accepted", message=message), 202
    return _page("public/check_inbox.html", lang)


def _answer_no_sooner_than(moment: float) -> None:
    """Hold the answer until ``moment`` (``time.monotonic()``).

    The same answer for every address is not enough: storing a new contact
    took 1-2 ms longer than re-using a known one, which a patient attacker can
    measure. Waiting for a fixed floor that the work stays well under hides it.
    """
    remaining = moment - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


@bp.after_request
def _let_allowed_sites_read_the_answer(response: Any) -> Any:
    """CORS for ``/subscribe``: an allowed site may post JSON with fetch() and read
    the (address-independent) answer. Other sites get no CORS headers."""
    origin = request.headers.get("Origin", "").rstrip("/").lower()
    if request.endpoint != "public.subscribe" or not origin:
        return response
    # A preflight names no form: any origin registered for one may read answers.
    allowed = _own_origins().union(
        *(_form_origins(form) for form in current_policy().forms.values())
    )
    if origin in allowed or "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
    return response


def _hosted_form() -> Any:
    form = current_policy().form(HOSTED_FORM_ID)
    lang = form.language_for(request.args.get("lang") or _browser_language())
    asked = [t.strip() for t in request.args.get("topics", "").split(",") if t.strip()]
    topics = form.check_topics(asked or form.topics)  # without ?topics=, all it offers
    wording = form_wording(form, lang, topics, shown_version(form))
    return _page(
        "public/subscribe.html",
        page_language(lang),
        topics=topics,
        wording=wording,
        form_id=form.id,
        form_lang=lang,
        page_url=request.url,
    )


def _signup(data: dict[str, Any], lang: str, topics: tuple[str, ...]) -> Signup:
    return Signup(
        email=data["email"],
        topics=topics,
        language=lang,
        country=data["country"],
        name=data["name"],
        company=data["company"],
        checkbox_ticked=data["consent"],
    )


def _signup_evidence(
    data: dict[str, Any],
    form: SignupForm,
    lang: str,
    topics: tuple[str, ...],
    origin: str | None,
) -> Evidence:
    return signup_evidence(
        _evidence(lang),
        form=form,
        topics=topics,
        consent_ticked=bool(data["consent"]),
        page_url=_page_of_the_form(data["page_url"], origin),
    )


def _page_of_the_form(posted: str | None, origin: str | None) -> str | None:
    """The page the form sat on, for the evidence.

    Across sites a browser sends only the origin as Referer, so the snippet
    posts the page's address (``page_url``). It is the post's word, kept only
    when it lies on the origin that posted: a page cannot speak for another
    site's page. Failing that, the Referer, or the bare origin.
    """
    for url in (posted, request.referrer):
        if url and _origin(url) is not None and origin in (None, _origin(url)):
            return url[:500]
    return origin


# Confirm -------------------------------------------------------------------------------------


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    if request.method != "POST":  # GET and HEAD only read
        pending = subscription_flows.read_confirmation(token)
        return _page(
            "public/confirm.html",
            pending.language,
            token=token,
            topics=pending.topics,
            already=pending.already_confirmed,
        )
    pending = subscription_flows.read_confirmation(token)
    _check_origin(pending.language)
    outcome = subscription_flows.confirm(
        token,
        _evidence(
            pending.language,
            form_id="confirmation",
            page_url=_page_url(),
            policy_version=current_version_label(),
        ),
    )
    return _page(
        "public/confirmed.html",
        pending.language,
        topics=pending.topics,
        already=outcome.already_confirmed,
    )


@bp.post("/confirm/<token>/renew")
@_sends_mail
def renew_confirmation(token: str) -> Any:
    _check_origin(_browser_language())
    lang = subscription_flows.renew_confirmation(token)
    return _page("public/renewed.html", lang)


# Unsubscribe -----------------------------------------------------------------------------------


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Any:
    if request.method != "POST":  # GET and HEAD only read
        holder, off = subscription_flows.read_unsubscribe_choices(token)
        return _page(
            "public/unsubscribe.html",
            holder.language,
            token=token,
            holder=holder,
            off=off,
            topic_off=off.covers(holder.topics),
            # The email's outbox row travels on, so that an objection made
            # through the preferences page counts against its campaign.
            preferences_url=preferences_url(holder.contact.id, holder.outbox_id),
        )
    holder = subscription_flows.read_unsubscribe_link(token)
    _check_origin(holder.language)
    try:
        scope = Scope(request.form.get("scope", Scope.TOPIC.value))
    except ValueError:
        raise InvalidInput(
            "Choose what to unsubscribe from.", fields={"scope": ["Unknown."]}
        ) from None
    subscription_flows.unsubscribe(
        token, scope, _evidence(holder.language, page_url=_page_url()), source="email_link"
    )
    return _page("public/unsubscribed.html", holder.language, holder=holder, scope=scope.value)


@bp.post("/unsubscribe/<token>/one-click")
def one_click(token: str) -> Any:
    """RFC 8058: a mailbox provider POSTs ``List-Unsubscribe=One-Click``; no cookies,
    no CSRF token, no redirect, no page to click through."""
    try:
        holder = subscription_flows.read_unsubscribe_link(token)
    except LinkInvalid:
        i18n.use_language(_browser_language())
        return _text(_("This unsubscribe link does not work. Nothing was changed."), 400)
    i18n.use_language(holder.language)
    if request.form.get("List-Unsubscribe") != "One-Click":
        return _text(_("The request must contain List-Unsubscribe=One-Click."), 400)
    scope = Scope.TOPIC if holder.topic_label else Scope.ALL
    subscription_flows.unsubscribe(
        token, scope, _evidence(holder.language, page_url=_page_url()), source="one_click"
    )
    return _text(_("You are unsubscribed."), 200)


def _text(body: str, status: int) -> Any:
    return body + "\n", status, {"Content-Type": "text/plain; charset=utf-8"}


@bp.route("/unsubscribe", methods=["GET", "POST"])
@_sends_mail
def unsubscribe_by_address() -> Any:
    lang = page_language(request.args.get("lang") or _browser_language())
    if request.method != "POST":  # GET and HEAD only read
        return _page("public/unsubscribe_address.html", lang)
    _check_origin(lang)
    data = _load(AddressSchema(), _form_data())
    if not data["website"]:
        subscription_flows.request_unsubscribe_link(data["email"])
    return _page("public/unsubscribe_address_sent.html", lang)


# Privacy requests (R20, R21) ------------------------------------------------------------------


@bp.route("/privacy/requests", methods=["GET", "POST"])
@_sends_mail
def privacy_request() -> Any:
    lang = page_language(request.args.get("lang") or _browser_language())
    if request.method != "POST":  # GET and HEAD only read
        return _page("public/privacy_request.html", lang)
    _check_origin(lang)
    data = _load(PrivacyRequestSchema(), _form_data())
    if not data["website"]:
        privacy_requests.request_privacy(data["email"], data["kind"])
    # The same answer whether or not we know the address (no enumeration).
    if request.is_json:
        return {"status": "accepted"}, 202
    return _page("public/privacy_sent.html", lang)


@bp.route("/privacy/verify/<token>", methods=["GET", "POST"])
def privacy_verify(token: str) -> Any:
    if request.method == "POST":
        link = privacy_requests.verify_privacy(token)
    else:  # GET and HEAD only read: a mail scanner must not verify anything
        link = privacy_requests.read_privacy_link(token)
    # The due date in the contact's language and zone (their day, not UTC's).
    i18n.use_language(link.language)
    i18n.use_zone(link.zone)
    return _page("public/privacy_verify.html", link.language, link=link)


# Preference centre ------------------------------------------------------------------------------


@bp.route("/preferences/<token>", methods=["GET", "POST"])
@_sends_mail
def preferences(token: str) -> Any:
    holder, prefs = subscription_flows.read_preferences(token)
    if request.method != "POST":  # GET and HEAD only read
        return _page("public/preferences.html", holder.language, token=token, prefs=prefs)
    _check_origin(holder.language)
    action = request.form.get("action", "save")
    scope = {"all": Scope.ALL, "object": Scope.OBJECT}.get(action)
    saved = subscription_flows.save_preferences(
        token,
        request.form.getlist("topics"),
        _evidence(holder.language, page_url=_page_url()),
        scope=scope,
    )
    policy = current_policy()
    named = lambda keys: names_in_text([policy.topic(k) for k in keys], holder.language)  # noqa: E731
    return _page(
        "public/preferences_saved.html",
        holder.language,
        token=token,
        saved=saved,
        off=named(saved.turned_off),
        on=named(saved.to_confirm),
    )


# Undo a signup recorded at once (R8) --------------------------------------------------------


@bp.route("/undo/<token>", methods=["GET", "POST"])
def undo(token: str) -> Any:
    """The link in the email that tells a person a form subscribed them at once:
    GET shows what it would undo and a button; only the button's POST undoes."""
    link = subscription_flows.read_undo_link(token)
    lang = link.holder.language
    preferences = preferences_url(link.holder.contact.id)
    if request.method != "POST":  # GET and HEAD only read
        return _page("public/undo.html", lang, token=token, link=link, preferences_url=preferences)
    _check_origin(lang)
    done = subscription_flows.undo_signup(token, _evidence(lang, page_url=_page_url()))
    return _page("public/undone.html", lang, link=done, preferences_url=preferences)


# Development: the mail folder ------------------------------------------------------------------------


def _is_development() -> bool:
    return current_app.config["CONSENT_ENV"] == "development" or current_app.debug


@bp.get("/dev/mail")
def dev_mail() -> Any:
    if not _is_development():
        abort(404)
    folder = mail_folder()
    files = sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else []
    return _page("public/dev_mail.html", i18n.SOURCE_LANGUAGE, files=[f.name for f in files])


@bp.get("/dev/mail/<name>")
def dev_mail_file(name: str) -> Any:
    """One message, decoded, so that its links can be clicked."""
    if not _is_development() or Path(name).name != name or not name.endswith(".eml"):
        abort(404)
    path = mail_folder() / name
    if not path.is_file():
        abort(404)
    message = read_message(path.read_bytes())
    body = message.get_body(preferencelist=("plain",))
    headers = [(key, str(value)) for key, value in message.items()]
    text = body.get_content() if body is not None else ""
    return _page(
        "public/dev_mail_message.html", i18n.SOURCE_LANGUAGE, name=name, headers=headers, text=text
    )


def register(app: Flask) -> None:
    # Deliberately without CSRF tokens: see the module docstring; _check_origin instead.
    csrf.exempt(bp)
    app.register_blueprint(bp)
