"""System checks of the TASKQUEUE setting: each id fires on a bad value and only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_taskqueue import checks
from django_taskqueue.conf import DEFAULTS, taskqueue_settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"

GOOD = {
    "QUEUE_YAML": FIXTURES / "queues_targets.yaml",
    "QUEUES": {"mail": {"rate": "10/s", "target": "worker"}, "work": {"mode": "pull"}},
    "DATABASE": "default",
    "TOMBSTONE_SECONDS": 0,
    "TARGETS": {"worker": "https://worker.internal:8443/tasks", "unknown-target": "http://w"},
    "SIGNING_KEY": "a-long-random-string",
    "FINISHED_RETENTION_SECONDS": 3600,
    "FAILED_RETENTION_SECONDS": 1.5,
    "DEFAULT_DEADLINE_SECONDS": 30,
    "POLL_INTERVAL_SECONDS": 0.2,
    "ALLOW_PICKLE": False,
    "REST_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "REST_LEASE_RATE": "600/m",
    "DELIVERY_HOST": "tasks.example.com",
    "DEFAULT_VERSION_HOSTNAME": "my-app.example.com",
    "SIGNATURE_MAX_AGE_SECONDS": 60,
    "SUMMARY_INTERVAL_SECONDS": 300,
    "RESCUE_INTERVAL_SECONDS": 5,
    "PRUNE_INTERVAL_SECONDS": 600,
    "LEASE_MARGIN_SECONDS": 1,
    "HEARTBEAT_INTERVAL_SECONDS": 2,
    "WORKER_TIMEOUT_SECONDS": 10,
    "MAX_WORKER_LOSSES": 3,
    "STATS_FLUSH_INTERVAL_SECONDS": 2.5,
    "STATS_RETENTION_SECONDS": 86400,
    "METRICS_TOKEN": "a-long-random-scraper-token",
    "CRON_YAML": FIXTURES / "cron.yaml",
    "CRON": {"clean-up": {"url": "/cleanup", "schedule": "every day 03:00"}},
    "CRON_QUEUE": "mail",
}

ALL_CHECKS = (
    checks.check_setting_shape,
    checks.check_queues,
    checks.check_database,
    checks.check_targets,
    checks.check_values,
    checks.check_rest,
    checks.check_statistics,
    checks.check_cron,
    checks.check_heartbeat,
)


def run_checks(**taskqueue: Any) -> list:
    with override_settings(TASKQUEUE=taskqueue):
        return [message for check in ALL_CHECKS for message in check(None)]


def ids(messages: list) -> list[str]:
    return [message.id for message in messages]


def test_good_configuration_passes() -> None:
    assert run_checks(**GOOD) == []


def test_defaults_pass() -> None:
    assert run_checks() == []
    with override_settings(TASKQUEUE=None):
        assert [m for check in ALL_CHECKS for m in check(None)] == []


def test_good_configuration_covers_every_key() -> None:
    assert set(GOOD) == set(DEFAULTS)


def test_every_message_has_a_hint() -> None:
    messages = run_checks(
        QUEUE_YAML=FIXTURES / "missing.yaml",
        QUEUES={"bad name": {}},
        DATABASE="no-such-alias",
        TARGETS={"w": "ftp://w"},
        TOMBSTONE_SECONDS=-1,
        SIGNING_KEY=b"bytes",
        POLL_INTERVAL_SECONDS=0,
        ALLOW_PICKLE="yes",
        TYPO=1,
    )
    assert sorted(ids(messages)) == [
        "django_taskqueue.E002",
        "django_taskqueue.E003",
        "django_taskqueue.E005",
        "django_taskqueue.E006",
        "django_taskqueue.E007",
        "django_taskqueue.E009",
        "django_taskqueue.E010",
        "django_taskqueue.E011",
        "django_taskqueue.E012",
    ]
    assert all(message.hint for message in messages)


@pytest.mark.parametrize("value", [["QUEUE_YAML"], "queue.yaml", 1])
def test_e001_not_a_dict(value: Any) -> None:
    with override_settings(TASKQUEUE=value):
        messages = [m for check in ALL_CHECKS for m in check(None)]
    # Only E001: the other checks cannot read a setting that is not a dict.
    assert ids(messages) == ["django_taskqueue.E001"]
    assert isinstance(messages[0], Error)


def test_e002_unknown_key() -> None:
    messages = run_checks(QUEUE_YML="queue.yaml", DATABASE="default")
    assert ids(messages) == ["django_taskqueue.E002"]
    assert "QUEUE_YML" in messages[0].msg


@pytest.mark.parametrize("value", [FIXTURES / "missing.yaml", str(FIXTURES / "missing.yaml"), 5])
def test_e003_yaml_missing_or_not_a_path(value: Any) -> None:
    assert ids(run_checks(QUEUE_YAML=value)) == ["django_taskqueue.E003"]


def test_e003_yaml_is_a_directory() -> None:
    assert ids(run_checks(QUEUE_YAML=FIXTURES)) == ["django_taskqueue.E003"]


@pytest.mark.parametrize("name", ["queues_bad_rate.yaml", "queues_not_yaml.yaml"])
def test_e004_yaml_malformed(name: str) -> None:
    messages = run_checks(QUEUE_YAML=FIXTURES / name)
    assert ids(messages) == ["django_taskqueue.E004"]
    assert name in messages[0].msg


def test_e004_not_on_a_good_yaml() -> None:
    assert (
        run_checks(
            QUEUE_YAML=FIXTURES / "queues_all_directives.yaml",
            TARGETS={"v2.mailer": "http://m", "reports": "http://r"},
        )
        == []
    )


@pytest.mark.parametrize(
    "queues",
    [
        ["mail"],
        {"mail": {"rate": "fast"}},
        {"work": {"mode": "pull", "rate": "1/s"}},
    ],
)
def test_e005_queues_malformed(queues: Any) -> None:
    assert ids(run_checks(QUEUES=queues)) == ["django_taskqueue.E005"]


def test_yaml_and_queues_errors_are_both_reported() -> None:
    messages = run_checks(QUEUE_YAML=FIXTURES / "queues_bad_rate.yaml", QUEUES={"a": {"x": 1}})
    assert ids(messages) == ["django_taskqueue.E004", "django_taskqueue.E005"]


@pytest.mark.parametrize("alias", ["no-such-alias", None, ["default"]])
def test_e006_database_not_configured(alias: Any) -> None:
    assert ids(run_checks(DATABASE=alias)) == ["django_taskqueue.E006"]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_e006_not_for_a_second_alias() -> None:
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "queue": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    with override_settings(DATABASES=databases):
        assert run_checks(DATABASE="queue") == []


@pytest.mark.parametrize(
    "targets",
    [
        ["https://worker"],
        {"w": "worker.internal"},
        {"w": "ftp://worker.internal"},
        {"w": "https://"},
        {"w": "https://worker.internal/?a=1"},
        {"w": "https://worker.internal/#top"},
        {"w": None},
        {"": "https://worker.internal"},
    ],
)
def test_e007_targets(targets: Any) -> None:
    assert ids(run_checks(TARGETS=targets)) == ["django_taskqueue.E007"]


def test_e007_good_targets() -> None:
    targets = {"w": "http://localhost:8000", "v2.w": "https://w.example.com/base/"}
    assert run_checks(TARGETS=targets) == []


def test_w008_queue_target_not_in_targets() -> None:
    messages = run_checks(
        QUEUE_YAML=FIXTURES / "queues_targets.yaml",
        QUEUES={"mail": {"target": "mailer"}},
        TARGETS={"worker": "https://worker.internal"},
    )
    assert ids(messages) == ["django_taskqueue.W008", "django_taskqueue.W008"]
    assert all(isinstance(message, Warning) for message in messages)
    assert "target 'unknown-target'" in messages[0].msg
    assert "target 'mailer'" in messages[1].msg


def test_w008_with_broken_targets_reports_e007_and_w008() -> None:
    messages = run_checks(QUEUES={"mail": {"target": "worker"}}, TARGETS="worker")
    assert sorted(ids(messages)) == ["django_taskqueue.E007", "django_taskqueue.W008"]


@pytest.mark.parametrize(
    "key", ["TOMBSTONE_SECONDS", "FINISHED_RETENTION_SECONDS", "FAILED_RETENTION_SECONDS"]
)
@pytest.mark.parametrize("value", [-1, "9d", None, True, float("nan"), float("inf")])
def test_e009_durations(key: str, value: Any) -> None:
    messages = run_checks(**{key: value})
    assert ids(messages) == ["django_taskqueue.E009"]
    assert key in messages[0].msg


@pytest.mark.parametrize("value", [b"key", "", 12345])
def test_e010_signing_key(value: Any) -> None:
    assert ids(run_checks(SIGNING_KEY=value)) == ["django_taskqueue.E010"]


@pytest.mark.parametrize("key", ["DEFAULT_DEADLINE_SECONDS", "POLL_INTERVAL_SECONDS"])
@pytest.mark.parametrize("value", [0, -1, "1", None])
def test_e011_positive_numbers(key: str, value: Any) -> None:
    assert ids(run_checks(**{key: value})) == ["django_taskqueue.E011"]


@pytest.mark.parametrize("value", [1, "True", None])
def test_e012_allow_pickle(value: Any) -> None:
    assert ids(run_checks(ALLOW_PICKLE=value)) == ["django_taskqueue.E012"]


def test_checks_are_registered() -> None:
    from django.core.checks.registry import registry

    registered = registry.get_checks()
    assert all(check in registered for check in ALL_CHECKS)


# The settings object the checks read -----------------------------------------------------------


def test_settings_object_merges_over_defaults_and_reloads() -> None:
    with override_settings(TASKQUEUE={"DATABASE": "queue", "SOMETHING": 1}):
        assert taskqueue_settings.DATABASE == "queue"
        assert taskqueue_settings.TOMBSTONE_SECONDS == 9 * 86400
    with override_settings(TASKQUEUE={}):
        assert taskqueue_settings.DATABASE == "default"
    with pytest.raises(AttributeError):
        taskqueue_settings.NOT_A_SETTING  # noqa: B018


def test_settings_object_rejects_a_non_dict_at_access() -> None:
    with override_settings(TASKQUEUE=["DATABASE"]), pytest.raises(ImproperlyConfigured):
        taskqueue_settings.DATABASE  # noqa: B018


def test_signing_key_is_derived_from_secret_key_unless_set() -> None:
    with override_settings(TASKQUEUE={}, SECRET_KEY="old"):
        old = taskqueue_settings.signing_key()
    with override_settings(TASKQUEUE={}, SECRET_KEY="new", SECRET_KEY_FALLBACKS=["old"]):
        new = taskqueue_settings.signing_key()
        assert new != old
        assert "new" not in new  # derived, not the secret itself
        assert taskqueue_settings.signing_fallback_keys() == [old]
    with override_settings(TASKQUEUE={"SIGNING_KEY": "explicit"}, SECRET_KEY_FALLBACKS=["old"]):
        assert taskqueue_settings.signing_key() == "explicit"
        assert taskqueue_settings.signing_fallback_keys() == []


def test_statistics_settings_are_checked(settings):
    from django_taskqueue.checks import check_statistics

    settings.TASKQUEUE = {"STATS_FLUSH_INTERVAL_SECONDS": 0, "STATS_RETENTION_SECONDS": 3600}
    assert [m.id for m in check_statistics()] == ["django_taskqueue.E070"] * 2
    settings.TASKQUEUE = {"METRICS_TOKEN": "short"}
    [message] = check_statistics()
    assert message.id == "django_taskqueue.E071" and message.hint
    settings.TASKQUEUE = {"METRICS_TOKEN": "x" * 32, "STATS_FLUSH_INTERVAL_SECONDS": 5}
    assert check_statistics() == []


@pytest.mark.parametrize("hostname", ["", "https://my-app.example.com", "my-app.example.com/x", 5])
def test_e030_default_version_hostname(hostname: Any) -> None:
    assert ids(run_checks(DEFAULT_VERSION_HOSTNAME=hostname)) == ["django_taskqueue.E030"]


class TestChecks:
    def run_checks(self):
        from django_taskqueue.checks import check_worker

        return sorted(m.id for m in check_worker())

    def test_defaults_pass(self):
        assert self.run_checks() == []

    def test_bad_values(self, settings):
        settings.TASKQUEUE = {
            **settings.TASKQUEUE,
            "RESCUE_INTERVAL_SECONDS": 0,
            "LEASE_MARGIN_SECONDS": "x",
            "DELIVERY_HOST": "",
        }
        assert self.run_checks() == [
            "django_taskqueue.E014",
            "django_taskqueue.E014",
            "django_taskqueue.E015",
        ]

    def test_missing_middleware_warns(self, settings):
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if not m.endswith("TaskHeaderMiddleware")
        ]
        assert self.run_checks() == ["django_taskqueue.W016"]
