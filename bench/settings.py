"""Django settings of the benchmark project; BENCH_DB chooses postgresql, mysql or sqlite.

The databases are the benchmark's own (`taskqueue_bench`), created and dropped by bench/run.py.
"""

import os
from importlib.util import find_spec
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"

VENDOR = os.environ.get("BENCH_DB", "postgresql")
DB_NAME = os.environ.get("BENCH_DB_NAME", "taskqueue_bench")

if VENDOR == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME,
            "USER": "postgres",
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            # BENCH_PG_SERVER_SIDE_BINDING=1 tries Django's psycopg 3 option (parameters sent
            # apart from the SQL, statements run often prepared) with `python -m bench.hotpaths`.
            "OPTIONS": {
                "server_side_binding": os.environ.get("BENCH_PG_SERVER_SIDE_BINDING") == "1"
            },
        }
    }
elif VENDOR == "mysql":
    import pymysql

    pymysql.install_as_MySQLdb()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DB_NAME,
            "USER": "root",
            "HOST": os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_MYSQL_PORT", "3306"),
            # As the test settings: claims must see rows committed since the transaction began.
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
        }
    }
elif VENDOR == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / f"{DB_NAME}.sqlite3"),
            "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
else:
    raise RuntimeError(f"BENCH_DB must be postgresql, mysql or sqlite, not {VENDOR!r}")

SECRET_KEY = "django-taskqueue-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "bench.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "django_taskqueue",
]

# The middleware a task request passes through: a small, ordinary stack, plus the app's own
# (it strips unsigned X-AppEngine-* headers) once it exists.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
_security = find_spec("django_taskqueue.security")
if _security is not None and "class TaskHeaderMiddleware" in Path(_security.origin).read_text():
    MIDDLEWARE.append("django_taskqueue.security.TaskHeaderMiddleware")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

TASKQUEUE = {
    "QUEUE_YAML": BENCH_DIR / "queue.yaml",
}

# Django's Tasks framework (the django-tasks backport on Django 5.2): our backend, and the
# django-tasks-db peer on the same database. BENCH_APPS says which of them a process installs,
# so that each worker runs with the apps its own project would have:
#   "all" (the default): both; the driver processes, `migrate` (every table exists), profiles.
#   "taskqueue": neither; a push-queue worker (push drains, idle latency).
#   "tasks": the framework and our backend; the worker of the Django Tasks drain.
#   "dtdb": the framework and django-tasks-db; django-tasks-db's `db_worker`.
APPS = os.environ.get("BENCH_APPS", "all")
if APPS not in ("all", "taskqueue", "tasks", "dtdb"):
    raise RuntimeError(f"BENCH_APPS must be all, taskqueue, tasks or dtdb, not {APPS!r}")
TASKS = {}
if APPS != "taskqueue" and find_spec("django_tasks") is not None:
    INSTALLED_APPS.append("django_tasks")
    if APPS != "dtdb" and find_spec("django_taskqueue.backends") is not None:
        TASKS["default"] = {
            "BACKEND": "django_taskqueue.backends.TaskQueueBackend",
            "QUEUES": ["bench-push"],
        }
    if APPS != "tasks" and find_spec("django_tasks_db") is not None:
        INSTALLED_APPS.append("django_tasks_db")
        TASKS["db"] = {"BACKEND": "django_tasks_db.DatabaseBackend"}
        if APPS == "dtdb":  # bench.tasks' `@task` names our queue: let its default accept it
            TASKS["default"] = {**TASKS["db"], "QUEUES": ["default", "bench-push"]}
    if not TASKS:
        TASKS["default"] = {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}
    elif "default" not in TASKS:
        TASKS["default"] = TASKS["db"]
