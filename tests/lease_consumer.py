"""A pull-queue consumer run as its own OS process by the concurrency tests.

Usage: python -m tests.lease_consumer QUEUE OUTFILE GO_FILE
Sets Django up and connects, creates OUTFILE to say it is ready, and waits until GO_FILE exists
(the test creates it once every consumer is ready, so they all start together); then leases
batches until the queue is empty, writing each leased name to OUTFILE before deleting the batch.
"""

import os
import sys
import time

import django


def main() -> None:
    queue_name, outfile, go_file = sys.argv[1], sys.argv[2], sys.argv[3]
    django.setup()
    from django.db import connection

    from django_taskqueue.taskqueue import Queue

    queue = Queue(queue_name)
    connection.ensure_connection()
    open(outfile, "w").close()  # ready
    while not os.path.exists(go_file):
        time.sleep(0.005)
    empty = 0
    with open(outfile, "w") as out:
        while empty < 3:
            tasks = queue.lease_tasks(600, 100)
            if not tasks:
                empty += 1
                time.sleep(0.05)
                continue
            empty = 0
            out.write("".join(f"{task.name}\n" for task in tasks))
            out.flush()
            queue.delete_tasks(tasks)


if __name__ == "__main__":
    main()
