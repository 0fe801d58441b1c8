"""Signals for extension: sent around each attempt of a push task and on each add."""

from django.dispatch import Signal

#: Sent by the worker before it runs an attempt. Keyword arguments: `queue_name`,
#: `task_name`, `task_id` (the row's primary key), `attempt` (1 for the first attempt),
#: `worker_id`. The sender is the worker's class (receivers are looked up once per sender:
#: sent for every attempt, the signals cache them).
task_attempt_started = Signal(use_caching=True)

#: Sent by the worker after an attempt, once its outcome is written. Keyword arguments:
#: `queue_name`, `task_name`, `task_id`, `attempt`, `worker_id`, `succeeded` (bool),
#: `will_retry` (bool: the task is queued again), `status_code` (int or None),
#: `error` (the exception, or None), `return_value` (a direct call's result, or None).
task_attempt_finished = Signal(use_caching=True)
