"""Durable Console settings: one module, driven by environment variables.

Embedded defaults (no variables set): SQLite in ``var/``, no broker (an
in-process worker pool), an in-memory channel layer. Production sets
``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DURABLE_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str) -> list[str]:
    """A comma-separated variable as a list, blanks dropped."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _secret_key() -> str:
    """The key from the environment, else one generated once and kept in var/."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret-key"
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_htmx",
    "template_partials",
    "channels",
    "executions",
    "approvals",
    "examples",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "durable_console.urls"
ASGI_APPLICATION = "durable_console.asgi.application"
WSGI_APPLICATION = "durable_console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
EMBEDDED_DATABASE_PATH = VAR_DIR / "durable.sqlite3"
DATABASE_URL = env_str("DATABASE_URL")
# Every SQLite database, the embedded one or one named by DATABASE_URL: WAL lets the
# CLI read and write while `make run` holds the file; IMMEDIATE takes the write lock
# at BEGIN, so two writers queue instead of failing with "database is locked" on upgrade.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=10000",
    "transaction_mode": "IMMEDIATE",
    "timeout": 10,
}
# A PostgreSQL connection that the server dropped (a restart, a failover) must not be kept:
# Django checks a reused connection before its first query in a request, worker task and
# sandbox job (CONN_HEALTH_CHECKS), and an unreachable server fails a connect or a stalled
# connection within seconds instead of the kernel's minutes, so retries can go on.
POSTGRES_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms: sent data unacknowledged this long ends the connection
    # The engine's hot-path statements (executions/engine/rows.py, checkpoint_fast.py) bind
    # on the server: prepared after their fifth run, they skip parsing and planning. Django
    # turns this off for the sake of transaction-mode poolers; PgBouncer 1.21+ handles
    # prepared statements (max_prepared_statements), older ones need DURABLE_DB_PREPARE_THRESHOLD=0.
    "prepare_threshold": env_int("DURABLE_DB_PREPARE_THRESHOLD", 5) or None,
}
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    # Options given in the URL's query string win over these.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["OPTIONS"] = {**POSTGRES_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": EMBEDDED_DATABASE_PATH,
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file, not shared-cache memory: the engine's threads then see the
            # same locking (WAL, busy timeout) as the embedded server.
            "TEST": {"NAME": VAR_DIR / "test.sqlite3"},
        }
    }
# Engine writes retry transient database errors (locked, serialization failure, deadlock,
# lost connection) with backoff for up to this long in all (executions/engine/db_retry.py).
DURABLE_DB_RETRY_SECONDS = env_float("DURABLE_DB_RETRY_SECONDS", 30.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security (HTTPS deployments; `manage.py check --deploy` is clean with these set) ---------
# Off by default so `make run` works over plain http://127.0.0.1. Behind a TLS-terminating
# proxy set DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO (and make the proxy set it).
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
# Load balancers probe health and Prometheus scrapes over plain HTTP; a redirect would read as down.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
_proxy_header, _, _proxy_value = env_str("DJANGO_SECURE_PROXY_SSL_HEADER").partition("=")
SECURE_PROXY_SSL_HEADER = (_proxy_header.strip(), _proxy_value.strip() or "https") if _proxy_header else None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

# --- Console ----------------------------------------------------------------------
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Login throttling (durable_console/login.py, the console's and the admin's login): after this
# many failed logins for one user name from one address, refuse it for the rest of the window.
DURABLE_LOGIN_MAX_FAILURES = env_int("DURABLE_LOGIN_MAX_FAILURES", 5)
DURABLE_LOGIN_LOCKOUT_SECONDS = env_int("DURABLE_LOGIN_LOCKOUT_SECONDS", 15 * 60)
# Live updates: changes to one execution within this window become one push.
DURABLE_LIVE_DEBOUNCE_SECONDS = env_float("DURABLE_LIVE_DEBOUNCE_SECONDS", 0.1)
# Largest number of executions one bulk stop/redrive may act on.
DURABLE_BULK_MAX_EXECUTIONS = env_int("DURABLE_BULK_MAX_EXECUTIONS", 10_000)
# A running bulk job whose runner has not reported progress for this long is resumed elsewhere.
DURABLE_BULK_STALE_SECONDS = env_float("DURABLE_BULK_STALE_SECONDS", 30.0)

# --- Celery (production transport) -----------------------------------------
# Without a broker the engine runs embedded: an in-process worker pool fed by
# the scheduler loop. Celery messages are only wake-up hints either way; the
# database decides what runs (docs/architecture.md).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Wait for the broker as long as it takes (Celery's default gives up after 100 tries, and
# the worker exits): the database holds all the work, so a worker only needs Redis back.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A running invocation needs the database, not the broker: a lost Redis connection must not
# cancel it (Celery 6 will default to cancelling acks_late tasks on connection loss).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# kombu's Redis transport with the fix for the worker exiting on a Redis restart under load
# ("Unrecoverable error: AttributeError(... 'hostname')", celery/kombu 5.7.0; see
# durable_console/celery.py). Other brokers keep their own transport.
CELERY_BROKER_TRANSPORT = (
    "durable_console.celery:RedisTransport"
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else None
)
# Longer than the longest invocation (15 min), so a slow handler is not redelivered.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1800}
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Channels ----------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# The cache holds login-failure counts and the console's shared counts, charts and board
# (executions/queries/cache.py): in Redis they are shared by every web process (one process
# computes, all serve it); the embedded server is one process, so its own memory will do.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "durable-console",
        }
    }

# --- Durable execution engine ----------------------------------------------------
# What may be registered (and run) as a handler: the deployment's own code only. Module
# prefixes: the demos' `examples` plus DURABLE_HANDLER_MODULES (the test harness adds `tests`).
# Handlers hosted elsewhere (http(s)://) only at DURABLE_REMOTE_HANDLER_ORIGINS
# (`https://host` any port, `https://host:9000` that port): none unless listed.
DURABLE_HANDLER_MODULES = ["examples", *env_list("DURABLE_HANDLER_MODULES")]
DURABLE_REMOTE_HANDLER_ORIGINS = env_list("DURABLE_REMOTE_HANDLER_ORIGINS")
DURABLE_REGION = env_str("DURABLE_REGION", "us-east-1")
DURABLE_ACCOUNT_ID = env_str("DURABLE_ACCOUNT_ID", "123456789012")
# How long a worker owns an execution before the scheduler assumes it died.
DURABLE_LEASE_SECONDS = env_float("DURABLE_LEASE_SECONDS", 30.0)
# A handler that raises is re-invoked after this delay, up to the attempt cap.
DURABLE_INVOCATION_RETRY_DELAY_SECONDS = env_float("DURABLE_INVOCATION_RETRY_DELAY_SECONDS", 5.0)
DURABLE_INVOCATION_MAX_ATTEMPTS = env_int("DURABLE_INVOCATION_MAX_ATTEMPTS", 5)
# Operations per page of invocation input and GetDurableExecutionState.
DURABLE_STATE_PAGE_SIZE = env_int("DURABLE_STATE_PAGE_SIZE", 1000)
DURABLE_INVOCATION_PAGE_BYTES = env_int("DURABLE_INVOCATION_PAGE_BYTES", 5 * 1024 * 1024)
DURABLE_SCHEDULER_INTERVAL_SECONDS = env_float("DURABLE_SCHEDULER_INTERVAL_SECONDS", 0.5)
# The scheduler re-sends a hint for due work nobody picked up after 5 s, then waits as long as
# the work had waited (10 s, 20 s, ...) up to this, so stopped workers do not flood the broker;
# it is also the longest a hint lost with a restarted broker delays waiting work.
DURABLE_REDISPATCH_MAX_SECONDS = env_float("DURABLE_REDISPATCH_MAX_SECONDS", 30.0)
DURABLE_EMBEDDED_WORKERS = env_int("DURABLE_EMBEDDED_WORKERS", 4)
# Sandbox children (executions.workers.sandbox): at most this many per process, each
# running one handler at a time; how long a new one may take to boot; and how much
# resident memory a child may keep beyond its start before it is replaced.
DURABLE_SANDBOX_MAX_CHILDREN = env_int("DURABLE_SANDBOX_MAX_CHILDREN", 16)
DURABLE_SANDBOX_START_SECONDS = env_float("DURABLE_SANDBOX_START_SECONDS", 60.0)
DURABLE_SANDBOX_RECYCLE_MB = env_int("DURABLE_SANDBOX_RECYCLE_MB", 1024)
DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS = env_int(
    "DURABLE_DEFAULT_EXECUTION_TIMEOUT_SECONDS", 7 * 24 * 3600
)
# How often the SDK's checkpoint thread looks for its stop signal (it waits 0.1 s by default).
DURABLE_SDK_STOP_POLL_SECONDS = env_float("DURABLE_SDK_STOP_POLL_SECONDS", 0.002)
# Key that derives callback ids from stored seeds; only their hashes are indexed.
DURABLE_CALLBACK_KEY = env_str("DURABLE_CALLBACK_KEY", SECRET_KEY)

# --- E-mail (approvals: reviewer notifications, verification links) ------------------------
# With EMAIL_HOST messages go out over SMTP. Without it, embedded mode (no broker: `make run`)
# prints them, links included, on the console: the demo's user follows them from there.
# Anywhere else only recipients and subject are logged: the links in the bodies act for
# their recipients and must not sit in logs.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
# A slow mail server must not hold a handler's submitter step for long.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
if EMAIL_HOST:
    _DEFAULT_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
elif not CELERY_BROKER_URL:
    _DEFAULT_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    _DEFAULT_EMAIL_BACKEND = "approvals.mail.BodilessLogBackend"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", _DEFAULT_EMAIL_BACKEND)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Durable Console <durable-console@localhost>")
# Where people reach the console: the base of the links in e-mails.
DURABLE_PUBLIC_URL = env_str("DURABLE_PUBLIC_URL", f"http://127.0.0.1:{env_str('PORT', '8000')}")

# --- Lambda-compatible API ----------------------------------------------------------
# Key that encrypts the stored API access-key secrets (SigV4 needs them in the clear).
DURABLE_ACCESS_KEY_SECRET = env_str("DURABLE_ACCESS_KEY_SECRET", SECRET_KEY)
# A RequestResponse Invoke of a durable function waits for the execution at most this
# long (Lambda's cap is 15 minutes), then answers with the execution still running.
DURABLE_API_SYNC_INVOKE_MAX_SECONDS = env_float("DURABLE_API_SYNC_INVOKE_MAX_SECONDS", 900.0)
# Largest request body the API reads (a synchronous Invoke payload: 6 MB, plus framing).
DURABLE_API_MAX_BODY_BYTES = env_int("DURABLE_API_MAX_BODY_BYTES", 6 * 1024 * 1024 + 64 * 1024)

# Prometheus metrics at /metrics (executions/metrics.py), on unless DURABLE_METRICS=0. Every
# process of a host writes its values to files in PROMETHEUS_MULTIPROC_DIR and /metrics adds
# them up; prometheus-client reads the variable when it is imported, so it is set here, first.
DURABLE_METRICS = env_bool("DURABLE_METRICS", True)
if DURABLE_METRICS:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# Log lines as readable text, or one JSON object per line (`json`) for log shippers, with the
# execution ARN, invocation, function and worker of the invocation they were logged in.
DURABLE_LOG_FORMAT = env_str("DURABLE_LOG_FORMAT", "text").strip().lower()
LOGGING_CONFIG = "durable_console.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "durable_console.logs.JsonFormatter"},
    },
    "filters": {
        # E-mail links' tokens never reach a log line (e.g. django.request's "Not Found: <path>").
        "redact_links": {"()": "approvals.log_filters.RedactLinkTokens"},
        "invocation": {"()": "executions.log_context.InvocationFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if DURABLE_LOG_FORMAT == "json" else "plain",
            "filters": ["redact_links", "invocation"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
    "loggers": {
        "executions": {"level": env_str("DURABLE_LOG_LEVEL", "INFO"), "propagate": True},
        "aws_durable_execution_sdk_python": {"level": "CRITICAL"},
    },
}
