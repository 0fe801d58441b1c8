#!/usr/bin/env python
"""The example project's leaderboard consumer: lease score events by game, add them up, delete.

It extends ``pull_worker.py`` (beside it) and needs only httpx. Each batch it leases shares one
tag, the game; it adds up each player's points, posts the totals to the example project
(``/leaderboard/totals/``, with the same token) and deletes the batch in one request. A batch
that cannot be reported is not deleted: its lease runs out and another lease picks it up::

    python examples/leaderboard_consumer.py --url http://127.0.0.1:8000/taskqueue/api/ \\
        --token 0123abcd...

``manage.py setupdemo`` prints the token of the user that the ``scores`` queue's acl names.
Until the server answers, the consumer waits for it (``--exit-when-empty`` excepted).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import Any
from urllib.parse import urljoin

import httpx
from pull_worker import Worker, arguments, checked, serve


class LeaderboardConsumer(Worker):
    waiting = False

    def lease(self) -> list[dict[str, Any]]:
        try:
            tasks = super().lease()
        except httpx.TransportError as e:
            if self.args.exit_when_empty:
                raise
            if not self.waiting:
                print(f"waiting for {self.args.url}: {e}", flush=True)
            self.waiting = True
            time.sleep(self.args.idle_seconds)
            return []
        self.waiting = False
        return tasks

    def run_batch(self, tasks: list[dict[str, Any]]) -> None:
        game = tasks[0]["tag"]
        totals: dict[str, int] = {}
        events: dict[str, int] = {}
        for task in tasks:
            event = json.loads(base64.b64decode(task["payload_base64"]))
            totals[event["player"]] = totals.get(event["player"], 0) + int(event["points"])
            events[event["player"]] = events.get(event["player"], 0) + 1
        checked(
            self.client.post(
                self.args.report_url, json={"game": game, "totals": totals, "events": events}
            )
        )
        self.delete([task["name"] for task in tasks])
        self.processed += len(tasks)
        print(f"game {game}: {len(tasks)} events, {len(totals)} players", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n")[0], queue="scores")
    parser.add_argument(
        "--report-url", help="where totals are posted (default: /leaderboard/totals/ of --url)"
    )
    args: argparse.Namespace = parser.parse_args(argv)
    args.report_url = args.report_url or urljoin(args.url, "/leaderboard/totals/")
    return serve(LeaderboardConsumer, args)


if __name__ == "__main__":
    sys.exit(main())
