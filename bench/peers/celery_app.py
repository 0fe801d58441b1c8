"""Celery with Redis at its defaults: prefork, concurrency = cores, prefetch x4, no results."""

from celery import Celery

from bench.jobs import mark

app = Celery("bench", broker="redis://127.0.0.1:6379/11")
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)


@app.task
def noop() -> None:
    mark()
