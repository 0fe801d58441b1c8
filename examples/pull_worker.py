#!/usr/bin/env python
"""A pull-queue worker outside Django: lease tasks by tag over the REST API, process, delete.

It needs only httpx (``pip install httpx``) and a token of a user whose e-mail is a
``user_email`` of the queue's acl (or who holds the permissions that docs/rest.md names)::

    python examples/pull_worker.py --url http://127.0.0.1:8000/taskqueue/api/ \\
        --token 0123abcd... --queue pull-acl --tag reports --exit-when-empty

The loop, as App Engine's pull-queue samples wrote it: lease a batch of tasks sharing one tag,
process each (here: print its payload), extend the lease of the rest of the batch when it runs
low, delete the processed tasks in one request, and back off when the queue is empty or the
server throttles lease requests (429 with Retry-After). Any other error of the API stops it
with the API's own words (its JSON ``code`` and ``detail``) and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import sys
import time
from typing import Any

import httpx


class ApiError(Exception):
    """The API answered an error; its JSON says which (`code`) and why (`detail`)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            self.code = str(body.get("code", ""))
            self.detail = str(body["detail"])
        else:  # not the API's JSON: a proxy's page, or a URL that is not the API
            self.code = ""
            self.detail = response.text[:200].strip() or response.reason_phrase
        super().__init__(
            f"{response.request.method} {response.request.url}: HTTP {self.status}"
            + (f" {self.code}" if self.code else "")
            + f": {self.detail}"
        )


def checked(response: httpx.Response) -> httpx.Response:
    """Return `response`, or raise ApiError when it is an error."""
    if response.is_error:
        raise ApiError(response)
    return response


class Worker:
    def __init__(self, client: httpx.Client, queue: str, args: argparse.Namespace) -> None:
        self.client = client
        self.queue = queue
        self.args = args
        self.processed = 0

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST JSON; wait and retry while the server answers 429 (throttled)."""
        while True:
            response = self.client.post(f"queues/{self.queue}/{path}", json=body)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def lease(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "lease_seconds": self.args.lease_seconds,
            "max_tasks": self.args.max_tasks,
            "group_by_tag": True,
        }
        if self.args.tag is not None:
            body["tag"] = self.args.tag
        return checked(self.post("lease/", body)).json()["tasks"]

    def extend(self, task: dict[str, Any]) -> bool:
        """Extend the lease held on `task` (its `eta`); False when the lease was lost."""
        response = self.post(
            f"tasks/{task['name']}/lease/",
            {"lease_seconds": self.args.lease_seconds, "eta": task["eta"]},
        )
        if response.status_code == 409:  # task_lease_expired: another worker has it now
            return False
        task["eta"] = checked(response).json()["eta"]
        print(f"extended {task['name']} until {task['eta']}", flush=True)
        return True

    def process(self, task: dict[str, Any]) -> None:
        payload = base64.b64decode(task["payload_base64"])
        print(f"processed {task['name']} {payload.decode('utf-8', 'replace')}", flush=True)

    def delete(self, names: list[str]) -> None:
        if not names:
            return
        response = checked(self.post("delete/", {"names": names}))
        print(f"deleted {len(response.json()['deleted'])}", flush=True)

    def run_batch(self, tasks: list[dict[str, Any]]) -> None:
        done = []
        for task in tasks:
            left = expiry(task) - datetime.datetime.now(datetime.UTC)
            if left.total_seconds() < self.args.extend_margin and not self.extend(task):
                continue
            self.process(task)
            done.append(task["name"])
        self.delete(done)
        self.processed += len(done)

    def run(self) -> int:
        while True:
            tasks = self.lease()
            if tasks:
                self.run_batch(tasks)
                continue
            if self.args.exit_when_empty:
                return self.processed
            time.sleep(self.args.idle_seconds)


def expiry(task: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(task["eta"].replace("Z", "+00:00"))


def arguments(
    description: str = __doc__.split("\n")[0], queue: str | None = None
) -> argparse.ArgumentParser:
    """The command line; examples/leaderboard_consumer.py extends it (and names its queue)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="the API's base URL, ending in /")
    parser.add_argument("--token", required=True, help="a DRF token")
    parser.add_argument("--queue", required=queue is None, default=queue)
    parser.add_argument("--tag", help="lease only this tag (default: the oldest task's tag)")
    parser.add_argument("--lease-seconds", type=float, default=60)
    parser.add_argument("--max-tasks", type=int, default=100)
    parser.add_argument(
        "--extend-margin",
        type=float,
        default=10,
        help="extend a task's lease before processing it when less than this many seconds "
        "of the lease are left",
    )
    parser.add_argument("--idle-seconds", type=float, default=1, help="back-off when empty")
    parser.add_argument("--exit-when-empty", action="store_true")
    return parser


def serve(worker_class: type[Worker], args: argparse.Namespace) -> int:
    """Run a worker until the queue is empty (--exit-when-empty) or an error stops it."""
    headers = {"Authorization": f"Token {args.token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        try:
            processed = worker_class(client, args.queue, args).run()
        except ApiError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        except httpx.TransportError as e:
            print(f"error: cannot reach {args.url}: {e}", file=sys.stderr, flush=True)
            return 1
    print(f"done: {processed} tasks", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(Worker, arguments().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
