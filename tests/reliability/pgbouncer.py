"""A PgBouncer in transaction mode in front of the test PostgreSQL, started by the test.

Debian's `/usr/sbin/pgbouncer` (CI installs the `pgbouncer` package), on a free port, with its
configuration in a temporary directory: trust authentication as the test database's user, one
pool per database, `pool_mode = transaction`, so a client's consecutive transactions may run on
different server connections and session state (prepared statements) does not follow them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def pgbouncer(host: str, port: int, user: str, pool_size: int = 4) -> Iterator[int]:
    """Run PgBouncer in front of `host:port`; yield the port it listens on."""
    if not os.path.exists(PGBOUNCER):
        raise RuntimeError(f"{PGBOUNCER} is missing: install Debian's pgbouncer package")
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    # PgBouncer refuses to run as root; as root it is told to become the postgres user, who
    # must read its files.
    directory.chmod(0o755)
    listen = _free_port()
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 500\n"
        # psycopg sends no such parameters; Django may ask for a time zone per connection.
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for path in directory.iterdir():
        path.chmod(0o644)
    command = [PGBOUNCER, "-q"]
    if os.geteuid() == 0:
        command += ["-u", "postgres"]
    proc = subprocess.Popen(
        [*command, str(directory / "pgbouncer.ini")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    "pgbouncer exited: " + (proc.stdout.read() if proc.stdout else "")
                )
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not start listening") from None
                time.sleep(0.1)
        yield listen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
