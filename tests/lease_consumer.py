"""A pull-queue consumer run as its own OS process by the concurrency tests.

Usage: python -m tests.lease_consumer QUEUE OUTFILE START_AT
Waits until the wall-clock time START_AT (so every consumer starts together), then leases
batches until the queue is empty, writing each leased name to OUTFILE before deleting the batch.
"""

import sys
import time

import django


def main() -> None:
    queue_name, outfile, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    django.setup()
    from django_taskqueue.taskqueue import Queue

    queue = Queue(queue_name)
    time.sleep(max(0.0, start_at - time.time()))
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
