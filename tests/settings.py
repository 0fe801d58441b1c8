"""Settings of the test project; DATABASE_URL chooses SQLite (default), PostgreSQL or MySQL."""

import copy
import os
import tempfile
from importlib.util import find_spec
from pathlib import Path

import environ

TESTS_DIR = Path(__file__).resolve().parent
BASE_DIR = TESTS_DIR.parent

env = environ.Env()

# SQLite *files*, never :memory:: tests start worker subprocesses that must see the same database.
# The process id in the test database's name keeps concurrent runs (two checkouts, two shells) off
# each other's file; children never use it, they receive the test database's URL
# (conftest.child_env). The suite itself never opens the non-test file.
_SQLITE_DIR = Path(tempfile.gettempdir())

DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{_SQLITE_DIR / 'django_taskqueue.sqlite3'}"
    ),
}
_db = DATABASES["default"]
_vendor = _db["ENGINE"].rsplit(".", 1)[-1]

if _vendor == "sqlite3":
    _db.setdefault("TEST", {}).setdefault(
        "NAME", str(_SQLITE_DIR / f"test_django_taskqueue_{os.getpid()}.sqlite3")
    )
    _db.setdefault("OPTIONS", {})
    # Worker subprocesses write while the test process reads: wait for locks instead of failing
    # at once, and use WAL so readers never block the writer.
    _db["OPTIONS"].setdefault("timeout", 20)
    _db["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL;")
elif _vendor == "mysql":
    # No libmariadb-dev here, so the pure-Python driver stands in for mysqlclient. It must be
    # installed before Django imports the MySQL backend, which happens after settings load.
    import pymysql

    pymysql.install_as_MySQLdb()
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"].setdefault("charset", "utf8mb4")
    # InnoDB defaults to REPEATABLE READ, where a transaction keeps reading the snapshot taken by
    # its first read. Queue claims (SELECT ... FOR UPDATE SKIP LOCKED) and sweeps must see rows
    # committed by other workers since then, so the queue wants READ COMMITTED, as on PostgreSQL.
    _db["OPTIONS"].setdefault("isolation_level", "read committed")
    # utf8mb4_bin: task and queue names are case-sensitive, as on App Engine.
    _db.setdefault("TEST", {}).update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"})

# Lets a developer run two suites against one server at once.
if os.environ.get("TEST_DATABASE_NAME"):
    _db.setdefault("TEST", {})["NAME"] = os.environ["TEST_DATABASE_NAME"]

# A second database, for adds made inside a transaction on another alias than the queue's:
# the task rides on that transaction's commit.
DATABASES["other"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": str(_SQLITE_DIR / "django_taskqueue_other.sqlite3"),
    "TEST": {"NAME": str(_SQLITE_DIR / f"test_django_taskqueue_other_{os.getpid()}.sqlite3")},
}

# The suite's database under a second name, for a queue whose alias is not `default`: the task
# store must build its statements with the connection of the queue's alias, which
# tests/db/test_store_alias.py checks with `default` pointed at another database.
DATABASES["queue"] = {
    **copy.deepcopy(_db),
    "TEST": {**_db.get("TEST", {}), "MIRROR": "default"},
}

SECRET_KEY = "django-taskqueue-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_taskqueue",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Strips X-AppEngine-* headers from requests that are not signed task requests.
    "django_taskqueue.security.TaskHeaderMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# Deliberately not UTC, so that naive ETAs are really interpreted in the current time zone.
USE_TZ = True
TIME_ZONE = "America/New_York"
USE_I18N = True
LANGUAGE_CODE = "en-us"

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Fast hashing: tests create users, nothing here protects real passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

TASKQUEUE = {
    "QUEUE_YAML": TESTS_DIR / "fixtures" / "queue.yaml",
}

# Django's Tasks framework on the push queues (django.tasks on Django 6; the django-tasks backport,
# whose app registers its checks and log receivers, on Django 5.2).
TASKS = {
    "default": {
        "BACKEND": "django_taskqueue.backends.TaskQueueBackend",
        "QUEUES": ["default", "fast", "bazqueue"],
    }
}
if find_spec("django.tasks") is None and find_spec("django_tasks") is not None:
    INSTALLED_APPS.append("django_tasks")

# Worker subprocess tests shorten deadlines and sweep intervals through the environment (a JSON
# object laid over TASKQUEUE), since a child process cannot use override_settings.
if os.environ.get("TASKQUEUE_TEST_OVERRIDES"):
    import json

    TASKQUEUE.update(json.loads(os.environ["TASKQUEUE_TEST_OVERRIDES"]))
