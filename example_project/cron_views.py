"""The example project's cron job: a heartbeat the workers request every minute (cron.yaml)."""

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden

from django_taskqueue.taskqueue import Queue

logger = logging.getLogger(__name__)


def heartbeat(request: HttpRequest) -> HttpResponse:
    """Log how many tasks wait in the default queue; only cron may call it."""
    # As on App Engine: TaskHeaderMiddleware strips X-AppEngine-Cron from unsigned requests,
    # so only the cron service's signed request gets past this line.
    if request.headers.get("X-AppEngine-Cron") != "true":
        return HttpResponseForbidden("Only cron may call this URL.")
    waiting = Queue("default").fetch_statistics().tasks
    logger.warning("heartbeat: %s task(s) waiting in the default queue", waiting)
    return HttpResponse(f"{waiting} waiting")
