"""Queue definitions: queue.yaml and QUEUES parsing, validation, defaults and caching."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_taskqueue import exceptions, queues
from django_taskqueue.queues import (
    DEFAULT_QUEUE,
    QueueConfig,
    QueueConfigurationError,
    all_queue_configs,
    get_queue_config,
    load_queue_yaml,
    parse_queue_definitions,
    parse_queue_yaml,
    total_storage_limit,
)
from django_taskqueue.retry import RetryParameters

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ALL_DIRECTIVES = FIXTURES / "queues_all_directives.yaml"


def queue(directives: dict[str, Any], name: str = "q") -> QueueConfig:
    """Parse one queue given as a QUEUES entry."""
    return parse_queue_definitions({name: directives})[name]


def queue_error(directives: dict[str, Any], name: str = "q") -> str:
    with pytest.raises(QueueConfigurationError) as info:
        queue(directives, name)
    return str(info.value)


def yaml_error(text: str) -> str:
    with pytest.raises(QueueConfigurationError) as info:
        parse_queue_yaml(text, source="test.yaml")
    return str(info.value)


# queue.yaml, read as is ------------------------------------------------------------------------


def test_yaml_with_every_directive() -> None:
    parsed = load_queue_yaml(ALL_DIRECTIVES)
    assert parsed.total_storage_limit == 1572864
    mail = parsed.queues["mail"]
    assert mail == QueueConfig(
        name="mail",
        mode="push",
        rate=2.0,
        rate_text="120/m",
        bucket_size=10,
        max_concurrent_requests=3,
        target="v2.mailer",
        retry_parameters=RetryParameters(
            task_retry_limit=7,
            task_age_limit=2 * 86400,
            min_backoff_seconds=0.5,
            max_backoff_seconds=600.0,
            max_doublings=4,
        ),
    )
    assert mail.is_push and not mail.is_pull and not mail.paused_by_config

    pull = parsed.queues["pull-work"]
    assert pull.is_pull and not pull.is_push and not pull.paused_by_config
    assert pull.rate is None and pull.rate_text is None
    assert pull.retry_parameters == RetryParameters(task_retry_limit=3)
    assert pull.user_emails == ("consumer@example.com", "other@example.com")
    assert pull.writer_emails == ("producer@example.com",)

    assert parsed.queues["default"].rate == 20.0
    assert parsed.queues["default"].bucket_size == 40
    assert parsed.queues["daily"].target == "reports"


def test_yaml_scalars_are_read_as_strings() -> None:
    # Unquoted 0123 is the queue "0123", as App Engine reads it, not the YAML 1.1 octal 83.
    assert "0123" in load_queue_yaml(ALL_DIRECTIVES).queues


@pytest.mark.parametrize(
    ("name", "rate", "text"),
    [
        ("mail", 2.0, "120/m"),
        ("hourly", 30 / 3600, "30/h"),
        ("daily", 2.5 / 86400, "2.5/d"),
        ("stopped", 0.0, "0"),
        ("no-rate", 5.0, "5/s"),
    ],
)
def test_yaml_rate_units(name: str, rate: float, text: str) -> None:
    config = load_queue_yaml(ALL_DIRECTIVES).queues[name]
    assert config.rate == pytest.approx(rate)
    assert config.rate_text == text


def test_rate_zero_pauses_a_push_queue() -> None:
    assert queue({"rate": "0"}).paused_by_config
    assert queue({"rate": "0/s"}).paused_by_config
    assert queue({"rate": 0}).paused_by_config
    assert queue({"rate": "0.0/m"}).rate == 0.0
    assert not queue({"rate": "1/d"}).paused_by_config


def test_rate_units() -> None:
    assert queue({"rate": "5/s"}).rate == 5.0
    assert queue({"rate": "5./s"}).rate == 5.0
    assert queue({"rate": "60/m"}).rate == 1.0
    assert queue({"rate": "7200/h"}).rate == 2.0
    assert queue({"rate": "86400/d"}).rate == 1.0


@pytest.mark.parametrize(
    "rate", ["5", "5/w", "/s", "five/s", "-1/s", "5/s/m", 5, 1.5, True, ["5/s"]]
)
def test_rate_errors(rate: Any) -> None:
    message = queue_error({"rate": rate}, name="mail")
    assert "QUEUES['mail']" in message and "rate" in message


def test_yaml_error_names_file_queue_and_directive() -> None:
    message = str(
        pytest.raises(
            QueueConfigurationError, load_queue_yaml, FIXTURES / "queues_bad_rate.yaml"
        ).value
    )
    assert "queues_bad_rate.yaml" in message
    assert 'queue "broken"' in message
    assert "rate" in message


def test_not_yaml() -> None:
    with pytest.raises(QueueConfigurationError, match="not valid YAML"):
        load_queue_yaml(FIXTURES / "queues_not_yaml.yaml")


def test_missing_file_is_an_os_error() -> None:
    with pytest.raises(OSError):
        load_queue_yaml(FIXTURES / "does-not-exist.yaml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty queue configuration"),
        ("# only a comment\n", "empty queue configuration"),
        ("- name: a\n", "mapping"),
        ("queues:\n- name: a\n", "unknown key"),
        ("queue: a\n", "must be a list"),
        ("queue:\n- a\n", "queue #1 is not a mapping"),
        ("queue:\n- rate: 5/s\n", "queue #1 has no name"),
        ("queue:\n- name: a\n- name: a\n", "defined twice"),
        ("queue:\n- name: a\n  speed: 5/s\n", "unknown directive(s) 'speed'"),
        ("queue:\n- name: a_b\n", "name 'a_b' is invalid"),
        ("queue:\n- name: ''\n", "is invalid"),
        (f"queue:\n- name: {'a' * 101}\n", "is invalid"),
        ("total_storage_limit: 10X\n", "total_storage_limit"),
        ("total_storage_limit: 1.5\n", "total_storage_limit"),
        ("total_storage_limit: M\n", "total_storage_limit"),
    ],
)
def test_yaml_structure_errors(text: str, fragment: str) -> None:
    message = yaml_error(text)
    assert message.startswith("test.yaml")
    assert fragment in message


def test_queue_name_of_100_characters_is_valid() -> None:
    assert queue({}, name="a" * 100).name == "a" * 100


def test_root_keys_application_and_resume_paused_queues_are_accepted() -> None:
    parsed = parse_queue_yaml("application: app\nresume_paused_queues: True\n")
    assert parsed.queues == {}
    assert parsed.total_storage_limit is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("100B", 100),
        ("2K", 2048),
        ("1.5M", 1572864),
        ("1G", 1024**3),
        ("2T", 2 * 1024**4),
        ("0", 0),
    ],
)
def test_total_storage_limit_units(text: str, expected: int) -> None:
    assert parse_queue_yaml(f"total_storage_limit: {text}\n").total_storage_limit == expected


# Directives ------------------------------------------------------------------------------------


def test_push_queue_defaults() -> None:
    assert queue({}) == QueueConfig(name="q", rate=5.0, rate_text="5/s")
    assert queue({}).bucket_size == 5
    assert queue({}).max_concurrent_requests is None
    assert queue({}).retry_parameters is None
    assert queue({"retry_parameters": {}}).retry_parameters is None


def test_integer_directives_accept_yaml_strings() -> None:
    config = queue({"bucket_size": "7", "max_concurrent_requests": "2"})
    assert (config.bucket_size, config.max_concurrent_requests) == (7, 2)


@pytest.mark.parametrize("directive", ["bucket_size", "max_concurrent_requests"])
@pytest.mark.parametrize("value", [0, -1, "x", 1.5, True])
def test_integer_directive_errors(directive: str, value: Any) -> None:
    assert directive in queue_error({directive: value})


@pytest.mark.parametrize("target", ["worker", "v2.worker", "a-1", "1.2"])
def test_target(target: str) -> None:
    assert queue({"target": target}).target == target


@pytest.mark.parametrize("target", ["-worker", "Worker", "a.b.c", "v2.", "w_1", "a" * 64, "w\n", 5])
def test_target_errors(target: Any) -> None:
    assert "target" in queue_error({"target": target})


def test_mode() -> None:
    assert queue({"mode": "push"}).is_push
    assert queue({"mode": "pull"}).is_pull
    assert "mode" in queue_error({"mode": "PULL"})


@pytest.mark.parametrize(
    ("directive", "value"),
    [
        ("rate", "5/s"),
        ("rate", "0"),
        ("bucket_size", 5),
        ("max_concurrent_requests", 1),
        ("target", "worker"),
    ],
)
def test_pull_queue_rejects_push_directives(directive: str, value: Any) -> None:
    message = queue_error({"mode": "pull", directive: value})
    assert f"{directive} applies to push queues only" in message


def test_acl_on_push_queue_is_accepted() -> None:
    config = queue({"acl": [{"writer_email": "w@example.com"}]})
    assert config.writer_emails == ("w@example.com",)
    assert config.user_emails == ()


def test_acl_entry_may_hold_both_keys() -> None:
    config = queue({"acl": [{"user_email": "u@example.com", "writer_email": "w@example.com"}]})
    assert (config.user_emails, config.writer_emails) == (("u@example.com",), ("w@example.com",))


@pytest.mark.parametrize(
    "acl",
    [
        "u@example.com",
        {"user_email": "u@example.com"},
        ["u@example.com"],
        [{}],
        [{"reader_email": "u@example.com"}],
        [{"user_email": ""}],
        [{"user_email": None}],
    ],
)
def test_acl_errors(acl: Any) -> None:
    assert "acl" in queue_error({"mode": "pull", "acl": acl})


def test_retry_parameters_from_yaml_strings() -> None:
    parsed = parse_queue_yaml(
        "queue:\n- name: a\n  retry_parameters:\n    task_retry_limit: 0\n"
        "    min_backoff_seconds: 1.5\n    max_doublings: 0\n"
    )
    assert parsed.queues["a"].retry_parameters == RetryParameters(
        task_retry_limit=0, min_backoff_seconds=1.5, max_doublings=0
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("30m", 1800), ("1.5h", 5400), ("2d", 172800)]
)
def test_task_age_limit_units(text: str, seconds: int) -> None:
    params = queue({"retry_parameters": {"task_age_limit": text}}).retry_parameters
    assert params is not None and params.task_age_limit == seconds


def test_fixup_lone_min_backoff_above_default_max_raises_max() -> None:
    params = queue({"retry_parameters": {"min_backoff_seconds": 7200}}).retry_parameters
    assert params == RetryParameters(min_backoff_seconds=7200, max_backoff_seconds=7200)


def test_fixup_lone_min_backoff_below_default_max_is_kept() -> None:
    params = queue({"retry_parameters": {"min_backoff_seconds": 60}}).retry_parameters
    assert params == RetryParameters(min_backoff_seconds=60)


def test_fixup_lone_max_backoff_below_default_min_lowers_min() -> None:
    params = queue({"retry_parameters": {"max_backoff_seconds": 0.05}}).retry_parameters
    assert params == RetryParameters(min_backoff_seconds=0.05, max_backoff_seconds=0.05)


def test_both_backoffs_out_of_order_is_an_error() -> None:
    message = queue_error(
        {"retry_parameters": {"min_backoff_seconds": 20, "max_backoff_seconds": 10}}
    )
    assert "min_backoff_seconds (20.0) must not be greater than max_backoff_seconds" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"task_retry_limit": -1}, "task_retry_limit must be at least 0"),
        ({"task_retry_limit": "many"}, "task_retry_limit 'many' is not an integer"),
        ({"task_age_limit": "2"}, "task_age_limit '2' is invalid"),
        ({"task_age_limit": "0s"}, "greater than zero"),
        ({"task_age_limit": 3600}, "task_age_limit must be a string"),
        ({"min_backoff_seconds": -1}, "min_backoff_seconds must not be negative"),
        ({"max_backoff_seconds": "fast"}, "max_backoff_seconds 'fast' is not a number"),
        ({"max_backoff_seconds": "inf"}, "is not a number"),
        ({"max_doublings": -1}, "max_doublings must be at least 0"),
        ({"retries": 3}, "unknown retry_parameters 'retries'"),
    ],
)
def test_retry_parameter_errors(options: dict[str, Any], fragment: str) -> None:
    message = queue_error({"retry_parameters": options}, name="mail")
    assert message.startswith("QUEUES['mail']: ")
    assert fragment in message


def test_retry_parameters_must_be_a_mapping() -> None:
    assert "retry_parameters must be a mapping" in queue_error({"retry_parameters": [1]})


# QUEUES ----------------------------------------------------------------------------------------


def test_queues_dict() -> None:
    queues = parse_queue_definitions(
        {
            "mail": {"rate": "10/s", "retry_parameters": {"task_retry_limit": 5}},
            "work": {"mode": "pull"},
            "plain": None,
            "named": {"name": "named"},
        }
    )
    assert queues["mail"].rate == 10.0
    assert queues["mail"].retry_parameters == RetryParameters(task_retry_limit=5)
    assert queues["work"].is_pull
    assert queues["plain"] == QueueConfig(name="plain", rate=5.0, rate_text="5/s")
    assert queues["named"].name == "named"


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        (["mail"], "QUEUES must be a dict"),
        ({"mail": "10/s"}, "must be a dict of queue directives"),
        ({"mail": {"name": "post"}}, "differs from the key"),
        ({"bad name": {}}, "name 'bad name' is invalid"),
        ({5: {}}, "name 5 is invalid"),
    ],
)
def test_queues_dict_errors(mapping: Any, fragment: str) -> None:
    with pytest.raises(QueueConfigurationError, match=fragment):
        parse_queue_definitions(mapping)


def test_default_may_be_a_pull_queue_when_declared_so() -> None:
    # App Engine accepts `- name: default / mode: pull` in queue.yaml.
    queues = parse_queue_definitions({"default": {"mode": "pull"}})
    assert queues["default"].is_pull


# Loading through the settings ------------------------------------------------------------------


@override_settings(TASKQUEUE={})
def test_default_queue_always_exists() -> None:
    assert all_queue_configs() == {"default": DEFAULT_QUEUE}
    default = get_queue_config("default")
    assert (default.mode, default.rate, default.bucket_size) == ("push", 5.0, 5)
    assert total_storage_limit() is None


@override_settings(TASKQUEUE={"QUEUES": {"default": {"rate": "1/s", "bucket_size": 1}}})
def test_declared_default_queue_wins() -> None:
    assert get_queue_config("default").rate == 1.0
    assert get_queue_config("default").bucket_size == 1


@override_settings(TASKQUEUE={"QUEUE_YAML": ALL_DIRECTIVES})
def test_queue_yaml_setting() -> None:
    configs = all_queue_configs()
    assert set(configs) == {
        "default",
        "mail",
        "hourly",
        "daily",
        "stopped",
        "no-rate",
        "0123",
        "pull-work",
    }
    assert configs["default"].rate == 20.0
    assert total_storage_limit() == 1572864


@override_settings(
    TASKQUEUE={
        "QUEUE_YAML": str(ALL_DIRECTIVES),
        "QUEUES": {"mail": {"rate": "0"}, "extra": {"mode": "pull"}},
    }
)
def test_queues_replace_yaml_queues_whole() -> None:
    mail = get_queue_config("mail")
    # Replaced, not merged: nothing of the yaml's "mail" survives.
    assert mail == QueueConfig(name="mail", rate=0.0, rate_text="0")
    assert mail.paused_by_config
    assert get_queue_config("extra").is_pull
    assert get_queue_config("hourly").rate_text == "30/h"


@override_settings(TASKQUEUE={})
@pytest.mark.parametrize("name", ["", "a b", "a_b", "a" * 101, None, 5])
def test_get_queue_config_invalid_name(name: Any) -> None:
    with pytest.raises(exceptions.InvalidQueueNameError):
        get_queue_config(name)


@override_settings(TASKQUEUE={})
def test_get_queue_config_unknown_queue() -> None:
    with pytest.raises(exceptions.UnknownQueueError, match="nope"):
        get_queue_config("nope")


@override_settings(TASKQUEUE={"QUEUES": {"mail": {"rate": "fast"}}})
def test_broken_configuration_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"QUEUES\['mail'\]: rate"):
        all_queue_configs()


@override_settings(TASKQUEUE={"QUEUE_YAML": FIXTURES / "does-not-exist.yaml"})
def test_missing_yaml_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="does-not-exist.yaml"):
        get_queue_config("default")


@override_settings(TASKQUEUE={"QUEUE_YAML": FIXTURES / "queues_not_yaml.yaml"})
def test_malformed_yaml_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="not valid YAML"):
        all_queue_configs()


def test_cache_follows_override_settings() -> None:
    with override_settings(TASKQUEUE={"QUEUES": {"one": {}}}):
        assert "one" in all_queue_configs()
        with override_settings(TASKQUEUE={"QUEUES": {"two": {}}}):
            assert "two" in all_queue_configs()
            assert "one" not in all_queue_configs()
        assert "one" in all_queue_configs()


def test_cache_follows_the_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited queue.yaml applies once its last check is `YAML_CHECK_SECONDS` old."""
    clock = [1000.0]
    monkeypatch.setattr(queues, "_monotonic", lambda: clock[0])
    path = tmp_path / "queue.yaml"
    path.write_text("queue:\n- name: first\n")
    with override_settings(TASKQUEUE={"QUEUE_YAML": path}):
        assert "first" in all_queue_configs()
        assert all_queue_configs() == all_queue_configs()

        path.write_text("queue:\n- name: second\n  rate: 1/s\n")
        stat = path.stat()
        # Make sure the modification time moves even on a coarse-grained filesystem.
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        clock[0] += queues.YAML_CHECK_SECONDS / 2
        assert "first" in all_queue_configs()  # checked under a second ago: not looked at
        assert get_queue_config("first").name == "first"
        clock[0] += queues.YAML_CHECK_SECONDS
        configs = all_queue_configs()
        assert "second" in configs and "first" not in configs
        with pytest.raises(exceptions.UnknownQueueError):
            get_queue_config("first")


def test_an_edited_yaml_file_is_read_again_within_a_second(tmp_path: Path) -> None:
    """The real clock: a queue added to queue.yaml exists a second after the edit at most."""
    path = tmp_path / "queue.yaml"
    path.write_text("queue:\n- name: first\n")
    with override_settings(TASKQUEUE={"QUEUE_YAML": path}):
        assert get_queue_config("first").name == "first"
        path.write_text("queue:\n- name: first\n- name: second\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        deadline = time.monotonic() + queues.YAML_CHECK_SECONDS + 1
        while "second" not in all_queue_configs():
            assert time.monotonic() < deadline, "the edited queue.yaml was not read again"
            time.sleep(0.05)
        assert get_queue_config("second").name == "second"


def test_returned_dict_is_a_copy() -> None:
    with override_settings(TASKQUEUE={}):
        all_queue_configs().clear()
        assert "default" in all_queue_configs()


@pytest.mark.parametrize("name", ["mail\n", "a-b\n"])
def test_trailing_newline_is_not_part_of_a_valid_name(name: str) -> None:
    with pytest.raises(QueueConfigurationError, match="is invalid"):
        parse_queue_definitions({name: {}})
    with pytest.raises(exceptions.InvalidQueueNameError):
        get_queue_config(name)
