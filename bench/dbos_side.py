"""DBOS's side of ``bench.run``: bench/dbos_peer.py run as subprocesses with the peer's own Python.

The peer runs with ``.venv-bench/bin/python`` (``make bench`` installs requirements-bench.txt
there), never the app's venv, against a database of its own on the bench's PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PEER = REPO / "bench" / "dbos_peer.py"
DEFAULT_PYTHON = REPO / ".venv-bench" / "bin" / "python"
DEADLINE_SECONDS = 600.0


def check_python(python: Path) -> str:
    """The DBOS version the peer's Python has; a clear error when it has none."""
    try:
        result = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"The DBOS peer needs {python} with requirements-bench.txt installed "
            f"(`make bench` creates it; or pass --peer-python): {exc}"
        ) from exc
    return result.stdout.strip()


def sqlalchemy_url(url: str) -> str:
    """tests.servers names PostgreSQL ``postgres://``; SQLAlchemy (under DBOS) wants ``postgresql://``."""
    return url.replace("postgres://", "postgresql://", 1)


def per_step(python: Path, database_url: str, runs: int, log_dir: Path) -> dict[str, Any]:
    """One peer process, one workflow at a time (see bench/dbos_peer.py, ``per-step``)."""
    with open(log_dir / "dbos-per-step.log", "ab") as log:
        result = subprocess.run(
            [str(python), str(PEER), database_url, "per-step", "--runs", str(runs)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=DEADLINE_SECONDS,
            check=True,
        )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def throughput(
    python: Path, database_url: str, workflows: int, processes: int, threads: int, log_dir: Path
) -> dict[str, Any]:
    """Workflows per second of ``processes`` peer processes x ``threads`` calling threads.

    Each process launches DBOS, warms up and says ``ready``; all are then released together
    and run their share of ``workflows`` 5-step workflows. workflows/s = N / (the last call's
    end - the first call's start, across every process; time.time(), one clock).
    """
    shares = [workflows // processes + (1 if n < workflows % processes else 0) for n in range(processes)]
    peers = [_start_peer(python, database_url, share, threads, n, log_dir) for n, share in enumerate(shares)]
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        for peer in peers:
            _expect_line(peer, "ready", deadline)
        for peer in peers:  # release them together
            _stdin(peer).write("go\n")
            _stdin(peer).flush()
        reports = [json.loads(_expect_line(peer, "{", deadline)) for peer in peers]
    finally:
        for peer in peers:
            _finish(peer)
    window = max(r["last_end"] for r in reports) - min(r["first_start"] for r in reports)
    return {
        "workflows": workflows,
        "processes": processes,
        "threads_per_process": threads,
        "workflows_per_second": workflows / window,
        "latency_ms_p50_per_process": [r["latency_ms_p50"] for r in reports],
    }


def _start_peer(
    python: Path, database_url: str, workflows: int, threads: int, index: int, log_dir: Path
) -> subprocess.Popen[str]:
    argv = [str(python), str(PEER), database_url, "throughput"]
    argv += ["--workflows", str(workflows), "--threads", str(threads), "--executor-id", f"bench-{index}"]
    with open(log_dir / f"dbos-throughput-{index}.log", "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
        )


def _stdin(peer: subprocess.Popen[str]) -> IO[str]:
    assert peer.stdin is not None
    return peer.stdin


def _expect_line(peer: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    """The peer's next line on stdout, which must start with ``prefix``; an error at the deadline."""
    assert peer.stdout is not None
    ready, _, _ = select.select([peer.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = peer.stdout.readline() if ready else ""
    if not line.startswith(prefix):
        raise RuntimeError(f"the DBOS peer said {line!r} instead of {prefix!r}... (see its log)")
    return line


def _finish(peer: subprocess.Popen[str]) -> None:
    """Wait for the peer to exit (closing its stdin releases one still waiting for "go")."""
    with contextlib.suppress(BrokenPipeError):
        _stdin(peer).close()
    try:
        peer.wait(timeout=30)
    except subprocess.TimeoutExpired:
        peer.kill()
        peer.wait()
