"""Several server processes on PostgreSQL share one queue: bench.load against `terakoya serve --workers 2`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import load


@pytest.mark.postgres
def test_two_server_processes_share_the_queue_and_lose_nothing_when_one_is_killed(
    postgres_url: str, tmp_path: Path
) -> None:
    code = load.main(
        ["--db", postgres_url, "--workers", "2", "--kill-one-after", "2", "--trainers", "6", "--tasks", "200",
         "--seconds", "6", "--think-ms", "0", "--out", str(tmp_path)]
    )  # fmt: skip
    result = json.loads((tmp_path / "load.json").read_text())
    check = result["count_check"]
    assert len(result["killed_worker_pids"]) == 1
    assert check["acknowledged"] > 20
    assert (check["acknowledged_equals_stored"], check["keys_stored_twice"], check["tasks_answered_twice"]) == (
        True,
        0,
        0,
    )
    assert code == 0
