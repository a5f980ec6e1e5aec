"""A throwaway PostgreSQL cluster on 127.0.0.1, from Debian's server binaries (tests and `bench.load --postgres`)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["NoPostgres", "temporary_cluster"]


class NoPostgres(RuntimeError):
    """No cluster can be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def temporary_cluster(*, max_connections: int = 200) -> Iterator[str]:
    """Start a cluster in a temporary folder (trust auth, fsync off), yield its URL, stop and delete it."""
    bindir = _pg_bin()
    if bindir is None:
        raise NoPostgres("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin); `make test` installs them as root")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        raise NoPostgres("running as root without runuser: cannot start PostgreSQL (initdb refuses root)")
    folder = Path(tempfile.mkdtemp(prefix="terakoya-pg-"))
    port = _free_port()

    def run(*args: str) -> None:
        cmd = [str(bindir / args[0]), *args[1:]]
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    try:
        if as_root:
            shutil.chown(folder, "postgres", "postgres")
        run("initdb", "-D", f"{folder}/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync")  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}"
        )
        run("pg_ctl", "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-o", options, "start")
    except (subprocess.CalledProcessError, KeyError, LookupError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        raise NoPostgres(
            f"could not start a PostgreSQL cluster: {exc} {detail.decode(errors='replace')[:300]}"
        ) from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", f"{folder}/data", "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
