"""`runtaskworker` on an accelerated clock, run as its own OS process by the cron tests.

Usage: python -m tests.cron_worker [runtaskworker options]
TASKQUEUE_TEST_CLOCK="BASE,REAL,SPEED": `clock.now()` is BASE (a Unix time) when the wall
clock reads REAL, and runs SPEED times faster than the wall clock. Every process given the same
value shares one accelerated clock, so cron slots, task ETAs and claims agree across them.
"""

import datetime
import os
import sys
import time

import django


def main() -> None:
    base, real, speed = (float(x) for x in os.environ["TASKQUEUE_TEST_CLOCK"].split(","))
    django.setup()
    from django.core.management import call_command

    from django_taskqueue import clock

    def accelerated() -> datetime.datetime:
        return datetime.datetime.fromtimestamp(base + (time.time() - real) * speed, datetime.UTC)

    clock.now = accelerated  # the package reads the time through clock.now() only
    call_command("runtaskworker", *sys.argv[1:])


if __name__ == "__main__":
    main()
