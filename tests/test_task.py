"""Task construction: App Engine's validation rules, limits and properties."""

import datetime

import pytest
from django.utils import timezone

from django_taskqueue import taskqueue
from django_taskqueue.taskqueue import Task, TaskRetryOptions

from .conftest import FROZEN_AT


def test_defaults(frozen_clock):
    task = Task()
    assert task.method == "POST"
    assert task.name is None
    assert task.payload is None
    assert task.eta == FROZEN_AT
    assert task.eta_posix == FROZEN_AT.timestamp()
    assert task.url == ""
    assert task.on_queue_url
    assert task.queue_name is None
    assert task.retry_count == 0
    assert not task.was_enqueued
    assert not task.was_deleted


@pytest.mark.parametrize("name", ["a", "abc-DEF_123", "-leading", "x" * 500])
def test_valid_names(name):
    assert Task(name=name).name == name


@pytest.mark.parametrize("name", ["has.dot", "has/slash", "dollar$", "x" * 501, "sp ace"])
def test_invalid_names(name):
    with pytest.raises(taskqueue.InvalidTaskNameError):
        Task(name=name)


def test_invalid_method():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(method="PATCH")


def test_method_is_upper_cased():
    assert Task(method="get").method == "GET"


def test_unknown_keyword_is_type_error():
    with pytest.raises(TypeError):
        Task(priority=3)


def test_str_payload_is_utf8_with_text_content_type():
    task = Task("héllo")
    assert task.payload == "héllo".encode()
    assert task.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_bytes_payload_sets_no_content_type():
    task = Task(b"\x00\x01")
    assert task.payload == b"\x00\x01"
    assert "Content-Type" not in task.headers


def test_payload_of_wrong_type():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(payload=123)


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_payload_only_for_body_methods(method):
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(b"x", method=method)


def test_post_params_become_form_payload():
    # App Engine's Python 3 client: the body built from params is str, the values read back
    # by extract_params() are bytes.
    task = Task(params={"a": "1", "b": ["2", "3"]})
    assert task.payload == "a=1&b=2&b=3"
    assert task.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert task.extract_params() == {"a": b"1", "b": [b"2", b"3"]}


def test_get_params_go_to_the_query():
    task = Task(url="/work", method="GET", params={"a": "1", "euro": "\N{EURO SIGN}"})
    assert task.url == "/work?a=1&euro=%E2%82%AC"
    assert task.payload is None
    assert task.extract_params() == {"a": b"1", "euro": "\N{EURO SIGN}".encode()}


def test_extract_params_of_a_bytes_payload_has_bytes_keys():
    assert Task(b"a=1").extract_params() == {b"a": b"1"}
    assert Task("").extract_params() == {}
    with pytest.raises(ValueError):
        Task("foo").extract_params()


def test_default_url_with_params_for_get():
    assert Task(method="GET", params={"a": "b"}).url == "?a=b"


def test_payload_and_params_together():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(b"x", params={"a": "1"})


def test_query_in_post_url():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(url="/work?a=1")


def test_query_in_url_and_params():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(url="/work?a=1", method="GET", params={"b": "2"})


@pytest.mark.parametrize(
    "url", ["http://example.com/x", "//host/x", "relative", "/x#frag", "/" + "x" * 2083]
)
def test_invalid_urls(url):
    with pytest.raises(taskqueue.InvalidUrlError):
        Task(url=url)


def test_longest_url_path():
    assert Task(url="/" + "x" * 2082).url == "/" + "x" * 2082


def test_extract_params_rejects_bad_payload():
    with pytest.raises(ValueError):
        Task(b"not form data&&&").extract_params()


def test_countdown(frozen_clock):
    task = Task(countdown=90)
    assert task.eta == FROZEN_AT + datetime.timedelta(seconds=90)


def test_countdown_and_eta_together():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(countdown=1, eta=timezone.now())


@pytest.mark.parametrize(
    "bad", [{"countdown": "ten"}, {"countdown": [1]}, {"eta": 1234567890}, {"eta": "2025-01-01"}]
)
def test_countdown_and_eta_types(bad):
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(**bad)


def test_eta_thirty_days_is_the_limit(frozen_clock):
    Task(countdown=30 * 86400)
    with pytest.raises(taskqueue.InvalidEtaError):
        Task(countdown=30 * 86400 + 300)
    with pytest.raises(taskqueue.InvalidEtaError):
        Task(eta=FROZEN_AT + datetime.timedelta(days=31))


def test_past_eta_is_allowed(frozen_clock):
    past = FROZEN_AT - datetime.timedelta(days=400)
    assert Task(eta=past).eta == past


def test_naive_eta_is_in_the_current_time_zone(frozen_clock, settings):
    # The test settings use America/New_York: noon there is 17:00 UTC in January.
    naive = datetime.datetime(2025, 1, 15, 12, 0)
    assert Task(eta=naive).eta == datetime.datetime(2025, 1, 15, 17, 0, tzinfo=datetime.UTC)
    with timezone.override("Europe/Paris"):
        assert Task(eta=naive).eta == datetime.datetime(2025, 1, 15, 11, 0, tzinfo=datetime.UTC)


def test_aware_eta_is_stored_in_utc(frozen_clock):
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    eta = datetime.datetime(2025, 1, 16, 9, 0, tzinfo=tokyo)
    assert Task(eta=eta).eta.utcoffset() == datetime.timedelta(0)
    assert Task(eta=eta).eta == eta


def test_tag_only_for_pull_tasks():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(b"x", tag="t")
    assert Task(b"x", method="PULL", tag="t").tag == "t"
    assert Task(b"x", method="PULL", tag=b"t").tag == "t"


def test_tag_length():
    Task(b"x", method="PULL", tag="t" * 500)
    with pytest.raises(taskqueue.InvalidTagError):
        Task(b"x", method="PULL", tag="t" * 501)
    # InvalidTagError is a direct child of Error, as on App Engine.
    assert not issubclass(taskqueue.InvalidTagError, taskqueue.InvalidTaskError)


@pytest.mark.parametrize("kwargs", [{"url": "/x"}, {"headers": {"A": "b"}}, {"target": "backend"}])
def test_pull_tasks_forbid_push_fields(kwargs):
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(b"x", method="PULL", **kwargs)


def test_pull_params_become_payload():
    assert Task(method="PULL", params={"a": "1"}).payload == b"a=1"


def test_target_and_host_header_conflict():
    with pytest.raises(taskqueue.InvalidTaskError):
        Task(target="backend", headers={"Host": "example.com"})


def test_app_engine_directives_are_kept():
    # App Engine's client keeps the caller's X-AppEngine-* headers (X-AppEngine-FailFast is
    # a directive the service honours); the worker overwrites the ones the queue sets.
    task = Task(headers={"X-AppEngine-FailFast": "true", "X-Custom": "kept"})
    assert task.headers == {
        "X-AppEngine-FailFast": "true",
        "X-Custom": "kept",
        "X-AppEngine-Current-Namespace": "",
    }


def test_size_counts_method_payload_url_and_headers():
    task = Task(b"12345", url="/path", headers={"ab": "cd"})
    namespace = len("X-AppEngine-Current-Namespace") + 4
    assert task.size == len("POST") + 5 + len("/path") + (2 + 2 + 4) + namespace


_NAMESPACE_SIZE = len("X-AppEngine-Current-Namespace") + 4


def test_push_size_limit():
    overhead = len("POST") + _NAMESPACE_SIZE
    Task(b"x" * (taskqueue.MAX_PUSH_TASK_SIZE_BYTES - overhead))
    with pytest.raises(taskqueue.TaskTooLargeError):
        Task(b"x" * (taskqueue.MAX_PUSH_TASK_SIZE_BYTES - overhead + 1))


def test_pull_size_limit():
    overhead = len("PULL") + _NAMESPACE_SIZE
    Task(b"x" * (taskqueue.MAX_PULL_TASK_SIZE_BYTES - overhead), method="PULL")
    with pytest.raises(taskqueue.TaskTooLargeError):
        Task(b"x" * (taskqueue.MAX_PULL_TASK_SIZE_BYTES - overhead + 1), method="PULL")


def test_constants():
    assert taskqueue.MAX_TASKS_PER_ADD == 100
    assert taskqueue.MAX_TASKS_PER_LEASE == 1000
    assert taskqueue.MAX_LEASE_SECONDS == 604800
    assert taskqueue.MAX_TASK_NAME_LENGTH == 500
    assert taskqueue.MAX_QUEUE_NAME_LENGTH == 100
    assert taskqueue.MAX_PUSH_TASK_SIZE_BYTES == 102400
    assert taskqueue.MAX_PULL_TASK_SIZE_BYTES == 1048576
    assert taskqueue.MAX_TAG_LENGTH == 500
    assert taskqueue.MAX_URL_LENGTH == 2083


def test_exception_tree():
    for name in taskqueue.__all__:
        obj = getattr(taskqueue, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, taskqueue.Error)
    for sub in (
        taskqueue.InvalidTaskNameError,
        taskqueue.TaskTooLargeError,
        taskqueue.TaskAlreadyExistsError,
        taskqueue.TombstonedTaskError,
        taskqueue.InvalidUrlError,
        taskqueue.InvalidEtaError,
    ):
        assert issubclass(sub, taskqueue.InvalidTaskError)
    assert issubclass(taskqueue.InvalidQueueNameError, taskqueue.InvalidQueueError)
    assert issubclass(taskqueue.TransactionalRequestTooLargeError, taskqueue.TaskTooLargeError)
    assert taskqueue.BadTransactionState is taskqueue.BadTransactionStateError


class TestRetryOptions:
    def test_unknown_option(self):
        with pytest.raises(TypeError):
            TaskRetryOptions(retries=3)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"min_backoff_seconds": -1},
            {"max_backoff_seconds": -1},
            {"max_doublings": -1},
            {"task_retry_limit": -1},
            {"task_age_limit": -1},
            {"min_backoff_seconds": 10, "max_backoff_seconds": 5},
        ],
    )
    def test_invalid(self, kwargs):
        with pytest.raises(taskqueue.InvalidTaskRetryOptionsError):
            TaskRetryOptions(**kwargs)

    def test_age_limit_rounds_up(self):
        assert TaskRetryOptions(task_age_limit=1.2).task_age_limit == 2

    def test_properties_and_dict(self):
        options = TaskRetryOptions(min_backoff_seconds=1, task_retry_limit=3)
        assert options.min_backoff_seconds == 1
        assert options.max_backoff_seconds is None
        assert options.to_dict() == {"min_backoff_seconds": 1, "task_retry_limit": 3}
        assert TaskRetryOptions.from_dict(options.to_dict()) == options

    def test_task_takes_only_retry_options(self):
        with pytest.raises(taskqueue.InvalidTaskError):
            Task(retry_options={"task_retry_limit": 1})


class TestQueueNames:
    @pytest.mark.parametrize("name", ["default", "a-b-C-1", "x" * 100])
    def test_valid(self, name):
        assert taskqueue.Queue(name).name == name

    @pytest.mark.parametrize("name", ["", "under_score", "x" * 101, "dot.ted", None])
    def test_invalid(self, name):
        with pytest.raises(taskqueue.InvalidQueueNameError):
            taskqueue.Queue(name)


def test_create_rpc_deadline():
    with pytest.raises(TypeError):
        taskqueue.create_rpc(deadline="1")
    with pytest.raises(taskqueue.InvalidDeadlineError):
        taskqueue.create_rpc(deadline=0)


def test_task_headers_mapping_methods_ignore_case():
    from django_taskqueue.task import CaselessDict

    headers = CaselessDict({"Content-Type": "text/plain"})
    assert headers.get("content-type") == "text/plain" and headers.get("x-missing", 1) == 1
    assert headers.setdefault("CONTENT-TYPE", "other") == "text/plain"
    assert headers.setdefault("X-New", "v") == "v" and headers["x-new"] == "v"
    assert headers.pop("x-NEW") == "v" and "X-New" not in headers
    assert headers.pop("x-new", None) is None
    with pytest.raises(KeyError):
        headers.pop("x-new")
    assert dict(headers.items()) == {"Content-Type": "text/plain"} == headers
    assert list(headers) == ["Content-Type"] and len(headers) == 1
