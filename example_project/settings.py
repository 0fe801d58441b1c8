"""Settings of the example project, read from the environment (and an optional .env file).

DATABASE_URL  sqlite:///path (default: example_project/db.sqlite3), postgres://..., mysql://...
SECRET_KEY    required when DEBUG is off
DEBUG         on by default: this is a demonstration project
ALLOWED_HOSTS comma-separated, default 127.0.0.1,localhost
PARSER_URL    base URL of the deployment that parses uploads (the `parser` target), default
              http://127.0.0.1:8000: this project's own runserver
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = BASE_DIR / "example_project"

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
# Only a debug run may fall back to a well-known key; otherwise a missing SECRET_KEY is an error.
SECRET_KEY = (
    env.str("SECRET_KEY", default="django-insecure-example-project")
    if DEBUG
    else env.str("SECRET_KEY")
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{PROJECT_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"].endswith("sqlite3"):
    # runserver and runtaskworker write to one file: wait for each other's locks, and let
    # readers go on while a write commits (WAL).
    _db.setdefault("OPTIONS", {}).setdefault("timeout", 20)
    _db["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL;")
elif _db["ENGINE"].endswith("mysql"):
    # PyMySQL stands in for mysqlclient (no C client library needed); it has to be installed
    # as MySQLdb before Django imports its MySQL backend.
    import pymysql

    pymysql.install_as_MySQLdb()
    _db.setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
    # Workers must see rows other workers committed since their transaction began.
    _db["OPTIONS"].setdefault("isolation_level", "read committed")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_taskqueue",
    "example_project.demo",
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

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

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

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKQUEUE = {
    "QUEUE_YAML": BASE_DIR / "example_project" / "queue.yaml",
    # Scheduled jobs (App Engine's cron.yaml), run by the same workers.
    "CRON_YAML": BASE_DIR / "example_project" / "cron.yaml",
    # The uploads queue's target: its tasks are sent over HTTP to this deployment, as App Engine
    # sends a task to another service of the app. Every other task runs in the worker's process.
    "TARGETS": {"parser": env.str("PARSER_URL", default="http://127.0.0.1:8000")},
}

# Django's Tasks framework, backed by the queues above (`@task` functions in demo/jobs.py).
TASKS = {
    "default": {
        "BACKEND": "django_taskqueue.backends.TaskQueueBackend",
        "QUEUES": ["default", "callables"],
    }
}
try:
    import django.tasks  # noqa: F401  (Django 6.0 and newer)
except ImportError:  # Django 5.2: the backport's app (checks, log receivers)
    INSTALLED_APPS.append("django_tasks")
