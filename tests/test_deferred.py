"""The deferred library: defer(), signed payloads, results, and the worker running the calls."""

from __future__ import annotations

import datetime
import pickle

import pytest
from django.db import transaction
from django.test import override_settings

from django_taskqueue import callables, deferred, taskqueue
from django_taskqueue.dispatch import direct
from django_taskqueue.dispatch.sweeps import Pruner
from django_taskqueue.models import DeferredPayload, TaskRecord
from django_taskqueue.testing import run_tasks
from tests import deferred_targets as targets
from tests.conftest import run_burst_worker

pytestmark = pytest.mark.django_db

READY, RUNNING = deferred.ResultStatus.READY, deferred.ResultStatus.RUNNING
SUCCESSFUL, FAILED = deferred.ResultStatus.SUCCESSFUL, deferred.ResultStatus.FAILED


@pytest.fixture(autouse=True)
def _clean_calls():
    targets.CALLS.clear()
    targets.EXPLODED["value"] = False
    yield
    targets.CALLS.clear()


def _row(task: taskqueue.Task) -> TaskRecord:
    return TaskRecord.objects.get(queue_name=task.queue_name, name=task.name)


def _kind(task: taskqueue.Task) -> bytes:
    return callables.verify(bytes(_row(task).payload))[0]


def test_homemade_queue_example():
    """The mission's example: four calls succeed with their values, the first fails for good."""
    tasks = [
        deferred.defer(
            targets.fails_with_type_error,
            "world",
            _retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0),
        ),
        deferred.defer(targets.add, 2, 3),
        deferred.defer(targets.Counter(10).plus, 5),
        deferred.defer(targets.Multiplier(3), 7),
        deferred.defer(pow, 4, 2),
    ]
    waiting = [deferred.get_result(task.name) for task in tasks]
    assert [result.status for result in waiting] == [READY] * 5
    assert not any(result.is_finished for result in waiting)
    with pytest.raises(ValueError, match="not finished"):
        _ = waiting[1].return_value

    assert run_tasks() == 5

    failed, *succeeded = [deferred.get_result(task.name) for task in tasks]
    assert [result.status for result in succeeded] == [SUCCESSFUL] * 4
    assert [result.return_value for result in succeeded] == [5, 15, 21, 16]
    assert all(result.is_finished and result.attempts == 1 for result in succeeded)
    assert all(result.errors == [] for result in succeeded)
    assert failed.status == FAILED and failed.is_finished
    assert failed.attempts == 1
    [error] = failed.errors
    assert error.exception_class_path == "builtins.TypeError"
    assert error.exception_class is TypeError
    assert "Traceback (most recent call last)" in error.traceback
    assert "fails_with_type_error" in error.traceback
    assert "TypeError: can only concatenate str" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value
    assert failed.finished_at is not None and failed.started_at is not None


def test_result_fields_and_timestamps(frozen_clock):
    task = deferred.defer(targets.add, 1, 1)
    result = deferred.get_result(task.name)
    assert (result.id, result.name, result.queue_name) == (
        f"default:{task.name}",
        task.name,
        "default",
    )
    assert result.enqueued_at == frozen_clock.now()
    assert (result.started_at, result.finished_at, result.attempts) == (None, None, 0)
    frozen_clock.advance(5)
    run_tasks()
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, 2)
    assert result.started_at == result.last_attempted_at == result.finished_at == frozen_clock.now()
    assert result.enqueued_at < result.started_at
    assert result == deferred.get_result(task.name, "default")


def test_running_status_seen_from_inside_the_call():
    task = deferred.defer(targets.own_status, "me", _name="me")
    run_tasks()
    assert deferred.get_result("me").return_value == [RUNNING, 1]
    assert task.name == "me"


def test_results_are_readable_from_any_process(child_env):
    """A worker process runs the calls; this process reads what it recorded."""
    tasks = [deferred.defer(targets.add, 2, 40), deferred.defer(targets.Counter(40).plus, 2)]
    run_burst_worker(child_env, "default")
    for task in tasks:
        result = deferred.get_result(task.name)
        assert (result.status, result.return_value, result.attempts) == (SUCCESSFUL, 42, 1)


def test_unknown_task_has_no_result():
    with pytest.raises(taskqueue.UnknownTaskError):
        deferred.get_result("never-added")


def test_results_are_pruned_with_the_row(frozen_clock):
    task = deferred.defer(targets.add, 1, 2)
    run_tasks()
    assert deferred.get_result(task.name).return_value == 3
    Pruner("default", 60).run(frozen_clock.now() + datetime.timedelta(days=6))
    assert deferred.get_result(task.name).return_value == 3
    Pruner("default", 60).run(frozen_clock.now() + datetime.timedelta(days=10))
    with pytest.raises(taskqueue.UnknownTaskError):
        deferred.get_result(task.name)


# -- what can be deferred, and how it travels ------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "args", "kind", "value"),
    [
        (targets.add, (2, 3), b"json", 5),
        (pow, (4, 2), b"json", 16),
        (targets.Counter.make, (4,), b"json", 4),
        (targets.Counter.double, (4,), b"json", 8),
        (targets.Counter(1).plus, (2,), b"pickle", 3),
        (targets.Multiplier(2), (5,), b"pickle", 10),
        (targets.add, ((1, 2), (3,)), b"pickle", (1, 2, 3)),
        (targets.Point, (1, 2), b"json", None),
    ],
    ids=[
        "function",
        "builtin",
        "classmethod",
        "staticmethod",
        "bound",
        "instance",
        "tuples",
        "class",
    ],
)
def test_accepted_callables(obj, args, kind, value):
    task = deferred.defer(obj, *args)
    assert _kind(task) == kind
    returned = deferred.run(bytes(_row(task).payload))
    if obj is targets.Point:
        assert isinstance(returned, targets.Point) and (returned.x, returned.y) == args
    else:
        assert returned == value
    run_tasks()
    result = deferred.get_result(task.name)
    assert result.status == SUCCESSFUL
    # Return values are kept when they are JSON (a tuple becomes a list, an instance None).
    assert result.return_value == (list(value) if isinstance(value, tuple) else value)


def test_keyword_arguments_and_coroutines():
    shout = deferred.defer(targets.shout, "hi", times=2)
    coroutine = deferred.defer(targets.async_add, 2, b=5)
    run_tasks()
    assert deferred.get_result(shout.name).return_value == "HI!HI!"
    assert deferred.get_result(coroutine.name).return_value == 7


def _nested():
    def inner():
        return 1

    return inner


def _closure(n):
    return lambda: n


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (lambda: 1, "lambda cannot be deferred"),
        (_nested(), "defined inside a function"),
        (_closure(3), "lambda cannot be deferred"),
        (42, "is not callable"),
    ],
    ids=["lambda", "nested", "closure", "not-callable"],
)
def test_refused_at_defer_time(obj, message):
    with pytest.raises(deferred.InvalidCallableError, match=message) as caught:
        deferred.defer(obj)
    assert isinstance(caught.value, taskqueue.InvalidTaskError)
    assert isinstance(caught.value, ValueError)
    assert not TaskRecord.objects.exists()


def test_unpicklable_arguments_refused_at_defer_time():
    with pytest.raises(deferred.InvalidCallableError, match="Cannot pickle"):
        deferred.defer(targets.add, lambda: 1, 2)
    assert not TaskRecord.objects.exists()


def test_task_options(frozen_clock):
    eta = frozen_clock.now() + datetime.timedelta(hours=1)
    task = deferred.defer(
        targets.add,
        1,
        2,
        _eta=eta,
        _name="named-add",
        _queue="fast",
        _retry_options=taskqueue.TaskRetryOptions(task_retry_limit=3),
        _headers={"X-Trace": "abc"},
    )
    row = _row(task)
    assert (task.name, task.queue_name, row.eta) == ("named-add", "fast", eta)
    assert row.url == deferred.DEFAULT_URL == "/_ah/queue/deferred"
    assert ["X-Trace", "abc"] in row.headers
    assert ["Content-Type", "application/octet-stream"] in row.headers
    assert row.retry_options == {"task_retry_limit": 3}
    later = deferred.defer(targets.add, 1, 2, _countdown=30, _url=None)
    assert _row(later).eta == frozen_clock.now() + datetime.timedelta(seconds=30)
    assert _row(later).url == "/_ah/queue/default"


def test_transactional_defer_follows_the_transaction():
    with transaction.atomic():
        kept = deferred.defer(targets.add, 1, 2, _transactional=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        deferred.defer(targets.add, 3, 4, _transactional=True)
        raise RuntimeError
    assert list(TaskRecord.objects.values_list("name", flat=True)) == [kept.name]


def test_payload_over_the_push_limit_goes_to_a_side_table_in_the_transaction():
    # As App Engine: the call is stored aside and the task runs `run_from_datastore(key)`.
    # Here the stored call and the task commit or roll back together.
    data = "x" * (taskqueue.MAX_PUSH_TASK_SIZE_BYTES + 1000)
    with pytest.raises(RuntimeError), transaction.atomic():
        deferred.defer(targets.big_len, data)
        raise RuntimeError
    assert not TaskRecord.objects.exists()
    assert not DeferredPayload.objects.exists()
    with transaction.atomic():
        task = deferred.defer(targets.big_len, data)
    assert len(_row(task).payload) < 1000
    [stored] = DeferredPayload.objects.all()
    assert (stored.queue_name, stored.task_name) == ("default", task.name)
    kind, body = callables.verify(bytes(_row(task).payload))
    assert b"run_from_datastore" in body and str(stored.key).encode() in body
    run_tasks()
    assert deferred.get_result(task.name).return_value == len(data)
    # Deleted once the call succeeded.
    assert not DeferredPayload.objects.exists()


def test_a_failed_large_call_keeps_its_payload_until_its_task_is_pruned(frozen_clock):
    data = "y" * (taskqueue.MAX_PUSH_TASK_SIZE_BYTES + 1)
    task = deferred.defer(targets.big_permanent_failure, data)
    run_tasks()
    assert deferred.get_result(task.name).status == FAILED
    assert DeferredPayload.objects.count() == 1
    Pruner("default", 60).run(frozen_clock.now() + datetime.timedelta(days=40))
    assert not TaskRecord.objects.exists()
    assert not DeferredPayload.objects.exists()


def test_run_from_datastore_of_a_missing_call_is_a_permanent_failure():
    with pytest.raises(deferred.PermanentTaskFailure):
        deferred.run_from_datastore("00000000-0000-0000-0000-000000000000")
    with pytest.raises(deferred.PermanentTaskFailure):
        deferred.run_from_datastore("not-a-key")


def test_serialize_and_run_are_inverse():
    assert deferred.run(deferred.serialize(targets.add, 2, 3)) == 5
    assert deferred.run(deferred.serialize(pow, 2, 10)) == 1024
    assert deferred.run(deferred.serialize(deferred.invoke_member, "abc", "upper")) == "ABC"
    with pytest.raises(deferred.InvalidCallableError):
        deferred.serialize(lambda: None)
    # What App Engine's defer raises there on Python 3 (pickle's AttributeError).
    with pytest.raises(AttributeError):
        deferred.serialize(lambda: None)


def test_defer_sets_app_engines_headers_and_keeps_directives():
    task = deferred.defer(targets.add, 1, 2, _headers={"X-AppEngine-FailFast": "true"})
    assert task.headers["content-type"] == "application/octet-stream"
    assert task.headers["X-AppEngine-FailFast"] == "true"
    assert task.url == deferred.DEFAULT_URL
    replaced = deferred.defer(targets.add, 1, 2, _headers={"Content-Type": "text/plain"})
    assert replaced.headers["Content-Type"] == "text/plain"


def test_error_is_the_base_of_both_failures():
    assert issubclass(deferred.PermanentTaskFailure, deferred.Error)
    assert issubclass(deferred.SingularTaskFailure, deferred.Error)


def test_set_log_level_changes_the_level_of_the_request_log(caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="django_taskqueue")
    try:
        deferred.set_log_level(logging.WARNING)
        assert deferred._log_level == logging.WARNING
    finally:
        deferred.set_log_level(logging.INFO)


# -- failures ---------------------------------------------------------------------------------


def test_failures_are_the_same_classes_as_the_workers():
    assert deferred.PermanentTaskFailure is direct.PermanentTaskFailure
    assert deferred.SingularTaskFailure is direct.SingularTaskFailure


def test_permanent_failure_is_not_retried():
    task = deferred.defer(targets.permanent_failure)
    run_tasks()
    result = deferred.get_result(task.name)
    assert result.status == FAILED and result.attempts == 1
    assert result.errors[0].exception_class is deferred.PermanentTaskFailure
    assert targets.CALLS == ["permanent"]


def test_singular_failure_is_retried_without_an_error(frozen_clock):
    task = deferred.defer(targets.singular_then_ok, "once")
    run_tasks()
    result = deferred.get_result(task.name)
    assert (result.status, result.attempts, result.errors) == (READY, 1, [])
    frozen_clock.advance(1)
    run_tasks()
    result = deferred.get_result(task.name)
    assert (result.status, result.attempts, result.return_value) == (SUCCESSFUL, 2, "ok")
    assert result.errors == []


def test_other_exceptions_are_retried_with_backoff(frozen_clock):
    task = deferred.defer(targets.fails_with_type_error, "x", _queue="bazqueue")
    run_tasks()
    row = _row(task)
    assert row.eta == frozen_clock.now() + datetime.timedelta(seconds=10)
    assert deferred.get_result(task.name, "bazqueue").status == READY
    frozen_clock.advance(10)
    run_tasks()
    assert _row(task).eta == frozen_clock.now() + datetime.timedelta(seconds=20)
    result = deferred.get_result(task.name, "bazqueue")
    assert result.attempts == 2 and len(result.errors) == 2


# -- signed payloads ---------------------------------------------------------------------------


def _forge(task: taskqueue.Task, body: bytes) -> None:
    """Swap the pickle of a stored task for `body`, keeping the original signature."""
    payload = bytes(_row(task).payload)
    magic, kind, signature, _ = payload.split(b":", 3)
    TaskRecord.objects.filter(pk=_row(task).pk).update(
        payload=b":".join((magic, kind, signature, body))
    )


def test_tampered_pickle_is_never_executed():
    task = deferred.defer(targets.Counter(1).plus, 2)
    assert _kind(task) == b"pickle"
    _forge(task, pickle.dumps((targets.Explode(), (), {})))

    run_tasks()

    assert targets.EXPLODED["value"] is False
    result = deferred.get_result(task.name)
    assert result.status == FAILED and result.attempts == 1  # permanent: not retried
    [error] = result.errors
    assert error.exception_class is deferred.PermanentTaskFailure
    assert "signature does not match" in error.traceback


def test_payload_signed_with_another_key_is_never_executed():
    with override_settings(TASKQUEUE={"SIGNING_KEY": "someone-elses-key"}):
        forged = callables.sign(b"pickle", pickle.dumps((targets.Explode(), (), {})))
    with pytest.raises(deferred.PermanentTaskFailure, match="signature"):
        deferred.run(forged)
    unsigned = pickle.dumps((targets.Explode(), (), {}))
    with pytest.raises(deferred.PermanentTaskFailure, match="not a signed call"):
        deferred.run(unsigned)
    assert targets.EXPLODED["value"] is False


def test_tampered_json_call_is_never_imported_nor_called():
    task = deferred.defer(targets.add, 1, 2)
    assert _kind(task) == b"json"
    payload = bytes(_row(task).payload)
    forged = payload.replace(b"tests.deferred_targets:add", b"tests.deferred_targets:_explode")
    TaskRecord.objects.filter(pk=_row(task).pk).update(payload=forged)
    run_tasks()
    assert targets.EXPLODED["value"] is False
    assert deferred.get_result(task.name).status == FAILED


def test_signing_key_rotation_keeps_old_payloads_valid():
    with override_settings(SECRET_KEY="old-secret"):
        payload = callables.encode_call(targets.add, (1, 2), {})
    with override_settings(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"]):
        assert deferred.run(payload) == 3
    with override_settings(SECRET_KEY="new-secret"), pytest.raises(deferred.PermanentTaskFailure):
        deferred.run(payload)


def test_pickle_can_be_switched_off():
    pickled = deferred.defer(targets.Multiplier(2), 3)
    tasks_setting = {"QUEUE_YAML": "tests/fixtures/queue.yaml", "ALLOW_PICKLE": False}
    with override_settings(TASKQUEUE=tasks_setting):
        # Calls that need pickle are refused when added...
        for obj, args in [(targets.Counter(1).plus, (2,)), (targets.add, ((1,), 2))]:
            with pytest.raises(deferred.InvalidCallableError, match="ALLOW_PICKLE"):
                deferred.defer(obj, *args)
        # ...JSON calls still run...
        plain = deferred.defer(targets.add, 1, 2)
        # ...and a pickled task added before is never unpickled.
        run_tasks()
        assert deferred.get_result(plain.name).return_value == 3
        result = deferred.get_result(pickled.name)
        assert result.status == FAILED
        assert "ALLOW_PICKLE" in result.errors[0].traceback
    assert TaskRecord.objects.count() == 2


# -- HTTP delivery ----------------------------------------------------------------------------


@pytest.fixture
def deferred_urls(settings):
    settings.ROOT_URLCONF = "tests.deferred_urls"
    return "/tasks/deferred-over-http"


def test_view_runs_calls_delivered_over_http(deferred_urls):
    """One worker serves both kinds: direct calls and requests through Django's handler."""
    direct_call = deferred.defer(targets.record, "direct")
    ok = deferred.defer(targets.record, "over http", _url=deferred_urls)
    failing = deferred.defer(
        targets.fails_with_type_error,
        "x",
        _url=deferred_urls,
        _retry_options=taskqueue.TaskRetryOptions(task_retry_limit=0),
    )
    assert run_tasks() == 3
    assert sorted(targets.CALLS) == ["direct", "over http"]
    assert deferred.get_result(direct_call.name).return_value == "direct"
    # Over HTTP only the outcome travels back, not the return value.
    assert deferred.get_result(ok.name).status == SUCCESSFUL
    result = deferred.get_result(failing.name)
    assert result.status == FAILED and "500" in result.errors[0].traceback


def test_view_refuses_requests_not_from_the_queue(client, deferred_urls):
    payload = callables.encode_call(targets.record, ("forged",), {})
    response = client.post(
        deferred_urls,
        payload,
        content_type="application/octet-stream",
        headers={"X-AppEngine-TaskName": "forged"},
    )
    assert response.status_code == 403
    assert client.get(deferred_urls).status_code == 403
    assert targets.CALLS == []
