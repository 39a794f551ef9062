"""Every environment variable the service reads, in the README table's order."""

from __future__ import annotations

from kernel.settings.declaration import (
    MIN_KEY_BYTES,
    Setting,
    base_url,
    broker_url,
    comma_list,
    database_url,
    environment,
    erasure_mode,
    flag,
    integer,
    log_format,
    log_level,
    number,
    opt_out,
    origins,
    positive_integer,
    smtp_url,
    stripped,
    text,
    time_of_day,
)

SETTINGS: tuple[Setting, ...] = (
    # Where it runs -------------------------------------------------------------
    Setting(
        "CONSENT_ENV",
        environment,
        "production",
        "`production`, `development` or `testing`; the last two generate their own "
        "secrets under `instance/` and skip the production checks; `testing` starts no worker",
    ),
    Setting(
        "DATABASE_URL",
        database_url,
        None,
        "e.g. `postgresql://user:pw@host:5432/consent` (psycopg 3 is used)",
        production="PostgreSQL",
        secret=True,
        opt_out="ALLOW_SQLITE_IN_PRODUCTION",
        shown_default="SQLite file `instance/consent.db`",
    ),
    Setting(
        "DRAMATIQ_BROKER_URL",
        broker_url,
        None,
        "`redis://host:6379/0` or `amqp://user:pw@host:5672/`; the queues the workers "
        "(`dramatiq worker`) take jobs from",
        production="set",
        secret=True,
        opt_out="ALLOW_INPROCESS_WORKER_IN_PRODUCTION",
        shown_default="none: in-process worker",
    ),
    Setting("DRAMATIQ_NAMESPACE", stripped, "consent", "Redis key namespace of the queues"),
    Setting(
        "INPROCESS_WORKER",
        flag,
        True,
        "with no broker, run the actors in the web process (`0` to disable)",
    ),
    # Processes -------------------------------------------------------------------
    Setting(
        "INSTANCE_PATH",
        stripped,
        None,
        "the one writable folder of an installation (generated development secrets, the "
        "SQLite file, the mail folder, the erasure journal's default place); the image and "
        "the units set `/var/lib/consent`",
        shown_default="`instance/` in a checkout, `<venv>/var/app-instance` when installed",
    ),
    Setting(
        "WEB_HOST",
        stripped,
        "0.0.0.0",  # noqa: S104 - a container publishes it; the unit binds loopback
        "the address gunicorn binds: `127.0.0.1` behind a reverse proxy on the same host "
        "(the systemd unit's choice), so that nobody reaches gunicorn past the proxy with "
        "`X-Forwarded-For` headers of their own (`TRUSTED_PROXY_HOPS`); all addresses in a "
        "container, whose port the engine publishes",
    ),
    Setting("PORT", positive_integer, 8000, "the port gunicorn binds"),
    Setting(
        "WEB_CONCURRENCY",
        positive_integer,
        None,
        "gunicorn processes (`gunicorn_conf.py`)",
        shown_default="the cores this process may use, from 2 to 8",
    ),
    Setting("WEB_THREADS", positive_integer, 4, "threads per gunicorn process"),
    Setting(
        "LOG_FORMAT",
        log_format,
        None,
        "`json`: one JSON object per log line, with the request id; `text`: plain lines for "
        "a terminal (docs/operations.md, Logs)",
        shown_default="`json` (`text` in development and testing)",
    ),
    Setting("LOG_LEVEL", log_level, "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`"),
    Setting(
        "METRICS_TOKEN",
        stripped,
        None,
        "the bearer token `GET /metrics` asks for (docs/operations.md, Metrics)",
        secret=True,
        shown_default="none: `/metrics` open in development and testing, refused (403) in "
        "production",
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        stripped,
        None,
        "an empty folder, private to one host and emptied at each start, where the gunicorn "
        "processes (and a worker on the same host) share their metrics: every scrape sums them "
        "(Prometheus multi-process mode; docs/operations.md, Metrics)",
        shown_default="none: each process counts alone",
    ),
    Setting(
        "RATELIMIT_STORAGE_URI",
        stripped,
        "memory://",
        "Flask-Limiter storage, e.g. `redis://host:6379/1`: shared by every web process",
        production="not `memory://`",
        secret=True,
        opt_out="ALLOW_MEMORY_RATELIMITS_IN_PRODUCTION",
    ),
    Setting(
        "RATELIMIT_IN_MEMORY_FALLBACK",
        flag,
        True,
        "while that Redis is down, count in each web process instead of failing the forms "
        "(`0`: fail)",
    ),
    Setting(
        "TRUSTED_PROXY_HOPS",
        integer,
        0,
        "how many reverse proxies (load balancer, ingress) stand in front of the web "
        "processes; with `1` or more, the client's address and scheme are taken from the "
        "`X-Forwarded-For`/`-Proto` entries those proxies added (werkzeug's `ProxyFix`). The "
        "rate limits count that address and a consent's evidence records it. Leave `0` when "
        "clients reach gunicorn directly: the header would then be the client's own word",
    ),
    Setting(
        "PUBLIC_BASE_URL",
        base_url,
        None,
        "base of the links in emails and of the public pages, e.g. `https://consent.example.com`",
        production="`https://`",
        opt_out="ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION",
        shown_default="`http://127.0.0.1:5000` (development only)",
    ),
    # Secrets -------------------------------------------------------------------
    Setting(
        "SECRET_KEY",
        text,
        None,
        "signs sessions and links",
        production=f"at least {MIN_KEY_BYTES} bytes",
        secret=True,
        shown_default="none: generated under `instance/` in development",
    ),
    Setting(
        "SECRET_KEY_FALLBACKS",
        comma_list,
        [],
        "comma-separated old keys still accepted after a rotation",
        secret=True,
    ),
    Setting(
        "SUPPRESSION_KEY",
        text,
        None,
        "HMAC key of the suppression list; never change it, or old entries stop matching "
        "(back it up with the database)",
        production=f"at least {MIN_KEY_BYTES} bytes",
        secret=True,
        shown_default="none: generated under `instance/` in development",
    ),
    Setting(
        "SESSION_COOKIE_SECURE",
        flag,
        True,
        "send the staff session cookie over HTTPS only",
    ),
    Setting(
        "STAFF_SESSION_MAX_AGE_S",
        integer,
        12 * 3600,
        "seconds a staff sign-in lasts",
        aliases=("STAFF_SESSION_MAX_AGE",),
        key="STAFF_SESSION_MAX_AGE",
    ),
    Setting(
        "STAFF_SIGN_IN_LIMIT_PER_IP",
        stripped,
        "30 per minute;200 per hour",
        "sign-in attempts per client address",
    ),
    Setting(
        "STAFF_SIGN_IN_LIMIT_PER_ACCOUNT",
        stripped,
        "5 per 15 minutes",
        "sign-in attempts per staff account",
    ),
    Setting(
        "MFA_REQUIRED_ROLES",
        comma_list,
        [],
        "staff roles that must sign in with a TOTP second factor (e.g. `admin,dpo`); a user "
        "of such a role enrols at the next sign-in; an unknown role stops the start "
        "(docs/accounts.md)",
    ),
    Setting(
        "PASSWORD_RESET_MAX_AGE_S",
        integer,
        3600,
        "how long a staff password-reset link works (it works once)",
    ),
    Setting(
        "STAFF_CODE_LIMIT_PER_ACCOUNT",
        stripped,
        "5 per 15 minutes",
        "second-factor codes tried per staff account",
    ),
    Setting(
        "STAFF_RESET_LIMIT_PER_ADDRESS",
        stripped,
        "3 per hour",
        "password-reset links asked for per address (known or not)",
    ),
    # Mail ----------------------------------------------------------------------
    Setting(
        "SMTP_URL",
        smtp_url,
        None,
        "`smtp://user:pass@host:587`: STARTTLS whenever the server offers it, then `AUTH`; "
        "`smtps://user:pass@host:465`: TLS from the first byte; `smtp://localhost:25`: a "
        "local relay, no user, no authentication. `smtp://` does not insist on TLS: a server "
        "that offers no STARTTLS gets the mail (and the password, if given) in the clear, so "
        "across a network use `smtps://` or a relay that offers STARTTLS",
        production="set",
        secret=True,
        opt_out="ALLOW_MAIL_FOLDER_IN_PRODUCTION",
        shown_default="none: mail written to `MAIL_FOLDER`",
    ),
    Setting(
        "SMTP_CA_FILE",
        stripped,
        None,
        "a PEM file with the CA that signed the SMTP server's certificate (a relay with a "
        "self-signed or private-CA certificate). Trusted for that server *instead of* the "
        "system store, so that no public CA can vouch for it; add the public CAs to the file "
        "if the server may also show a public certificate. Without it such a server's mail "
        "waits in the outbox, retried, with the reason in `last_error`",
        shown_default="none: the system's CAs",
    ),
    Setting(
        "MAIL_FOLDER",
        stripped,
        None,
        "where messages are written when `SMTP_URL` is not set",
        shown_default="`instance/mail/`",
    ),
    Setting(
        "MAIL_FROM",
        stripped,
        "Consent Service <no-reply@localhost>",
        "sender of every email",
    ),
    Setting(
        "BRAND_NAME",
        stripped,
        "",
        'the name the public pages and the signup notice give the sender ("Consent Service" '
        "when `MAIL_FROM` has none)",
        shown_default="the name in `MAIL_FROM`",
    ),
    Setting(
        "MAIL_UNSUBSCRIBE_MAILTO",
        stripped,
        None,
        "an address added as `mailto:` to `List-Unsubscribe` in marketing mail",
    ),
    Setting(
        "POLICY_NOTICE_ON_MAJOR",
        flag,
        True,
        "publishing a major privacy-policy version mails a notice to every registered address "
        "(R24); `0` to send it another way",
    ),
    Setting(
        "OUTBOX_MIN_BACKOFF_MS",
        integer,
        15_000,
        "retry backoff of temporary SMTP failures: the first wait",
    ),
    Setting(
        "OUTBOX_MAX_BACKOFF_MS",
        integer,
        30 * 60_000,
        "retry backoff of temporary SMTP failures: the longest wait",
    ),
    Setting(
        "OUTBOX_CLAIM_TIMEOUT_S",
        integer,
        600,
        "a row claimed by a worker that died (or handed over and still queued) this long ago "
        "is handed over again",
    ),
    Setting(
        "OUTBOX_SWEEP_INTERVAL_S",
        number,
        60.0,
        "the scheduler sends the outbox sweeper's job this often (`0`: never; then run "
        "`flask outbox sweep` from cron)",
    ),
    Setting(
        "OUTBOX_SWEEP_GRACE_S",
        number,
        60.0,
        "rows younger than this are left to the request that queued them",
    ),
    # Returned mail ---------------------------------------------------------------
    Setting(
        "BOUNCE_ADDRESS",
        stripped,
        None,
        "returned mail's address (`bounces@example.com`); each message leaves with "
        "`bounces+<signed outbox id>@example.com` as its envelope sender (VERP, "
        "`docs/bounces.md`)",
        shown_default="none: the envelope sender is `MAIL_FROM`'s address",
    ),
    Setting(
        "BOUNCE_IMAP_URL",
        stripped,
        None,
        "an IMAP folder of returned mail to read (`imaps://user:pass@host/INBOX`)",
        secret=True,
    ),
    Setting(
        "BOUNCE_IMAP_INTERVAL_S",
        number,
        300.0,
        "how often that folder is read",
    ),
    Setting(
        "BOUNCE_IMAP_DONE_FOLDER",
        stripped,
        None,
        "the IMAP folder processed messages move to",
        shown_default="none: deleted",
    ),
    Setting(
        "BOUNCE_IMAP_ERROR_FOLDER",
        stripped,
        "bounces-unreadable",
        "the IMAP folder messages that cannot be read move to",
    ),
    Setting(
        "BOUNCE_MAX_BYTES",
        integer,
        10 * 1024 * 1024,
        "a returned message larger than this is refused before it is parsed",
    ),
    Setting(
        "SES_SNS_TOPIC_ARNS",
        stripped,
        "",
        "the Amazon SES bounce webhook (through SNS): the topics taken, comma-separated "
        "(none: every post refused; docs/bounces.md)",
    ),
    Setting(
        "SNS_CERT_HOST_PATTERN",
        stripped,
        r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
        "where SNS signing certificates may come from (a regular expression over the host name)",
    ),
    Setting(
        "SNS_CA_FILE",
        stripped,
        None,
        "the CAs trusted to fetch SNS signing certificates",
        shown_default="the system's CAs",
    ),
    Setting("SNS_MAX_AGE_S", integer, 2 * 3600, "the oldest SNS signature taken"),
    Setting(
        "POSTMARK_WEBHOOK_AUTH",
        stripped,
        None,
        "`user:password`, the basic auth in Postmark's bounce webhook URL",
        secret=True,
        shown_default="none: refused",
    ),
    Setting(
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        stripped,
        None,
        "the SendGrid Signed Event Webhook's verification key (base64, as shown)",
        shown_default="none: refused",
    ),
    Setting("SENDGRID_MAX_AGE_S", integer, 600, "the oldest SendGrid signature taken"),
    Setting(
        "BOUNCE_WEBHOOK_LIMIT",
        stripped,
        "600 per minute",
        "posts per client address to each bounce webhook",
    ),
    Setting(
        "BOUNCE_WEBHOOK_MAX_BYTES",
        integer,
        1024 * 1024,
        "the largest body a bounce webhook takes",
    ),
    # Public forms ----------------------------------------------------------------
    Setting(
        "SIGNUP_ALLOWED_ORIGINS",
        origins,
        [],
        "comma-separated origins (`https://www.example.se`; `*` for any) that may post the "
        "registered signup forms that list no `origins` of their own; never the hosted form "
        '(docs/policy.md, docs/mail-flows.md "Cross-site posts")',
    ),
    Setting(
        "SIGNUP_LIMIT_PER_IP",
        stripped,
        "30 per hour",
        "rate limit shared by every public form that can send an email, per client address",
    ),
    Setting(
        "SIGNUP_LIMIT_PER_ADDRESS",
        stripped,
        "5 per hour",
        "the same, per mailbox (the address without its `+tag`, in lower case) and client",
    ),
    Setting(
        "SIGNUP_LIMIT_PER_DOMAIN",
        stripped,
        "100 per hour",
        "the same, per recipient domain",
    ),
    Setting(
        "MAILBOX_DAILY_LIMIT",
        integer,
        5,
        "at most this many emails a public form can cause go to one mailbox in 24 hours, and "
        "never more than one in ten minutes; counted in the database where the email is queued",
    ),
    Setting(
        "SIGNUP_MIN_S",
        number,
        0.1,
        "every signup is answered no sooner than this, so that its timing does not tell a new "
        "address from a known one",
        aliases=("SIGNUP_MIN_SECONDS",),
        key="SIGNUP_MIN_SECONDS",
    ),
    # Policy, retention, feed -----------------------------------------------------
    Setting(
        "POLICY_FILE",
        stripped,
        None,
        "topics, bases per topic, country rules, retention rules, the registered signup forms "
        "(docs/policy.md)",
        shown_default="`consent/default_policy.toml`",
    ),
    Setting(
        "RETENTION_DAILY_AT",
        time_of_day,
        "02:30",
        "when the daily retention run starts (HH:MM, UTC)",
    ),
    Setting(
        "RETENTION_BATCH_SIZE",
        integer,
        1000,
        "rows a retention run removes per transaction",
    ),
    Setting(
        "RETENTION_BATCH_PAUSE_S",
        number,
        0.0,
        "seconds a retention run waits between batches",
        aliases=("RETENTION_BATCH_PAUSE",),
        key="RETENTION_BATCH_PAUSE",
    ),
    Setting(
        "RETENTION_LOCK_STALE_S",
        integer,
        300,
        "a retention run's lock not beaten for this long may be taken over",
        aliases=("RETENTION_LOCK_STALE_SECONDS",),
        key="RETENTION_LOCK_STALE_SECONDS",
    ),
    Setting(
        "ERASURE_JOURNAL_PATH",
        stripped,
        None,
        "the erasure journal: every erasure and purge (hashes, ids, dates), kept outside the "
        "database so that `flask rights reapply` can redo them after a restore; put it on "
        "storage every process shares and that is backed up apart from the database "
        '(docs/operations.md, "Backup and restore")',
        shown_default="`instance/erasure-journal.jsonl`",
    ),
    Setting(
        "HEALTH_RETENTION_MARGIN_S",
        number,
        3 * 3600.0,
        "`/healthz` says `degraded` (still 200) when no retention run completed within a day "
        "plus this margin (docs/operations.md, Scheduling)",
    ),
    Setting(
        "HEALTH_OUTBOX_STUCK_AFTER_S",
        number,
        900.0,
        "`/healthz` says `degraded` when an email waited this long with none sent meanwhile",
    ),
    Setting(
        "CHANGE_FEED_KEEP_DAYS",
        integer,
        90,
        "days the change feed keeps its items (docs/integration.md)",
    ),
    Setting(
        "IDEMPOTENCY_KEEP_HOURS",
        number,
        24.0,
        "how long an API caller's `Idempotency-Key` and the answer kept for it last "
        "(docs/integration.md)",
    ),
    Setting(
        "IMPORT_MAX_BYTES",
        integer,
        200 * 1024 * 1024,
        "largest CSV the imports (API and staff page) accept, lifted only once the caller may "
        "import; every other route keeps a 1 MiB limit",
    ),
    # Webhooks --------------------------------------------------------------------
    Setting(
        "WEBHOOK_MIN_BACKOFF_MS",
        integer,
        5_000,
        "retry backoff of webhook deliveries: the first wait (docs/webhooks.md)",
    ),
    Setting(
        "WEBHOOK_MAX_BACKOFF_MS",
        integer,
        3_600_000,
        "retry backoff of webhook deliveries: the longest wait",
    ),
    Setting(
        "WEBHOOK_RETRY_HOURS",
        number,
        72.0,
        "a webhook delivery is retried this long after its first try, then fails; must be "
        "shorter than `CHANGE_FEED_KEEP_DAYS`",
    ),
    Setting(
        "WEBHOOK_REPLAY_MAX",
        integer,
        100_000,
        "the most changes one webhook replay may re-send",
    ),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE_TARGETS",
        flag,
        False,
        "`1` allows webhook receivers inside the network (loopback, private, link-local "
        "addresses); otherwise refused at registration and at every delivery, so that an "
        "admin's URL cannot reach Redis, the database or a cloud metadata service "
        "(docs/webhooks.md)",
    ),
    # The dashboard (docs/dashboard.md) ------------------------------------------
    Setting(
        "DASHBOARD_REFRESH_INTERVAL_S",
        number,
        900.0,
        "the scheduler counts the dashboard's slow sections (reachable audience, the ledger "
        "per week, the purge forecast) this often; the page shows their age (`0`: never)",
    ),
    # CRM connectors (docs/connectors.md) -----------------------------------------
    Setting(
        "CONNECTORS_ENABLED",
        comma_list,
        [],
        "the CRM connectors this installation runs: `hubspot`, `salesforce`; none by default",
    ),
    Setting(
        "CONNECTOR_SYNC_INTERVAL_S",
        number,
        300.0,
        "how often the scheduler sends each enabled connector's sync (seconds)",
    ),
    Setting(
        "CONNECTOR_FULL_PASS_INTERVAL_S",
        number,
        0.0,
        "a connector's next read of the CRM's records (contacts, interactions) starts this "
        "long after the last one ended (decisions and deletions go out at every turn); a "
        "connector that reads changes (HubSpot) reads only what changed since, one that "
        "cannot reads everything, so give that one an hour or so",
    ),
    Setting(
        "CONNECTOR_READ_OVERLAP_S",
        number,
        600.0,
        "a changed-since read starts this long before the previous read started (clock "
        "skew, a CRM search index that lags); records read twice change nothing",
    ),
    Setting(
        "CONNECTOR_RETRIES",
        integer,
        5,
        "tries of one CRM call answered 429, 5xx or not at all, before the sync stops "
        "for this turn (its cursors stay where the last written page left them)",
    ),
    Setting(
        "CONNECTOR_BACKOFF_S",
        number,
        1.0,
        "the first wait after a CRM's 5xx; doubled at each retry",
    ),
    Setting(
        "CONNECTOR_MAX_WAIT_S",
        number,
        60.0,
        "the longest a sync waits for one retry (a CRM's `Retry-After` above it ends "
        "the turn; the next turn resumes)",
    ),
    Setting(
        "HUBSPOT_ACCESS_TOKEN",
        stripped,
        None,
        "the HubSpot private app's access token (docs/connectors.md lists its scopes)",
        secret=True,
    ),
    Setting(
        "HUBSPOT_BASE_URL",
        base_url,
        "https://api.hubapi.com",
        "HubSpot's API address; the tests point it at a stand-in",
    ),
    Setting(
        "HUBSPOT_SUBSCRIPTION_TYPES",
        comma_list,
        [],
        "topic → HubSpot subscription type id, as `topic=id` pairs, e.g. "
        "`newsletter=123,events=456`; topics not named are not written",
    ),
    Setting(
        "HUBSPOT_CONSENT_POLICY_VERSION",
        stripped,
        None,
        "the version of our published policy whose consent wording HubSpot's forms show; when "
        "set, a consent HubSpot holds (`CONSENT_WITH_NOTICE`) becomes a request under the same "
        "double opt-in rules as the API's, with HubSpot's wording as its evidence; unset, "
        "consent is never read from HubSpot",
    ),
    Setting(
        "HUBSPOT_INTERACTIONS",
        comma_list,
        ["calls", "meetings"],
        "HubSpot objects that are interactions (they move `last_interaction_at`): any of "
        "`calls`, `meetings`, `emails`",
    ),
    Setting(
        "SALESFORCE_INSTANCE_URL",
        base_url,
        None,
        "the Salesforce org's address (its My Domain, e.g. `https://acme.my.salesforce.com`); "
        "the tests point it at a stand-in",
    ),
    Setting(
        "SALESFORCE_ACCESS_TOKEN",
        stripped,
        None,
        "an access token of the connected app's integration user (docs/connectors.md); "
        "alternatively set `SALESFORCE_CONSUMER_KEY` and `SALESFORCE_CONSUMER_SECRET`",
        secret=True,
    ),
    Setting(
        "SALESFORCE_CONSUMER_KEY",
        stripped,
        None,
        "the connected app's consumer key, for its client credentials flow (a token is asked "
        "of the org's My Domain and renewed when it expires)",
        secret=True,
    ),
    Setting(
        "SALESFORCE_CONSUMER_SECRET",
        stripped,
        None,
        "the connected app's consumer secret, with `SALESFORCE_CONSUMER_KEY`",
        secret=True,
    ),
    Setting(
        "SALESFORCE_API_VERSION",
        stripped,
        "59.0",
        "the Salesforce REST API version the connector calls",
    ),
    Setting(
        "SALESFORCE_DATA_USE_PURPOSES",
        comma_list,
        [],
        "topic → Salesforce `DataUsePurpose` id, as `topic=id` pairs; each mapped topic gets "
        "an email `ContactPointTypeConsent` per contact; topics not named are not written",
    ),
    Setting(
        "SALESFORCE_INTERACTIONS",
        comma_list,
        ["calls", "meetings"],
        "Salesforce activities that are interactions (they move `last_interaction_at`): any of "
        "`calls` (closed Tasks of subtype Call), `emails` (closed Tasks of subtype Email), "
        "`meetings` (Events)",
    ),
    Setting(
        "SALESFORCE_CUSTOMER_TYPES",
        comma_list,
        ["Customer - Direct", "Customer - Channel"],
        "values of `Account.Type` that make an account a customer (its contacts get the "
        "customer basis)",
    ),
    Setting(
        "SALESFORCE_CUSTOMER_SINCE_FIELD",
        stripped,
        None,
        "a date field on Account that says since when it is a customer (e.g. "
        "`Customer_Since__c`); unset, the account's `CreatedDate`",
    ),
    Setting(
        "SALESFORCE_MAY_MARKET_FIELD",
        stripped,
        "Consent_May_Market__c",
        "the Contact checkbox field that says whether we may market to the contact",
    ),
    Setting(
        "SALESFORCE_EXPLANATION_FIELD",
        stripped,
        "Consent_Explanation__c",
        "the Contact text field that holds the explanation sentence of that summary",
    ),
    Setting(
        "SALESFORCE_LEGAL_BASIS_FIELD",
        stripped,
        "Legal_Basis__c",
        "the ContactPointTypeConsent text field that holds the legal basis of each consent record",
    ),
    Setting(
        "HUBSPOT_ERASURE",
        erasure_mode,
        "delete",
        "what the connector does to HubSpot's copy of an erased or purged contact or "
        "activity: `delete` (archive it) or `anonymise` (overwrite the contact's personal "
        "properties and the activities' bodies and titles, keeping the records for reports); "
        "docs/connectors.md says when to choose which",
    ),
    Setting(
        "SALESFORCE_ERASURE",
        erasure_mode,
        "delete",
        "what the connector does to Salesforce's copy of an erased or purged contact or "
        "activity: `delete` (the contact with its Individual and consent records, or the Task "
        "or Event) or `anonymise` (overwrite the personal fields, mark the Individual "
        "ShouldForget); docs/connectors.md says when to choose which",
    ),
    # Production opt-outs ---------------------------------------------------------
    opt_out("ALLOW_SQLITE_IN_PRODUCTION", "a SQLite database"),
    opt_out(
        "ALLOW_INPROCESS_WORKER_IN_PRODUCTION",
        "jobs run inside the web process (no broker; queued jobs die with it)",
    ),
    opt_out(
        "ALLOW_MEMORY_RATELIMITS_IN_PRODUCTION",
        "rate limits counted per process (one web process only)",
    ),
    opt_out("ALLOW_MAIL_FOLDER_IN_PRODUCTION", "mail written to `MAIL_FOLDER`, never sent"),
    opt_out(
        "ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION",
        "an `http://` `PUBLIC_BASE_URL` (links and cookies in the clear)",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_KEY: dict[str, Setting] = {s.config_key: s for s in SETTINGS}
