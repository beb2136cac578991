"""``bench.run``'s results: min / median / max over repetitions, per-repetition ratios, a table."""

from __future__ import annotations

import statistics
from typing import Any


def spread(values: list[float], digits: int = 2) -> list[float]:
    """[min, median, max], rounded."""
    return [round(min(values), digits), round(statistics.median(values), digits), round(max(values), digits)]


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Each repetition's own ratio (the same repetition's engine figure / DBOS figure)."""
    return [top / bottom for top, bottom in zip(numerators, denominators, strict=True)]


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures of every repetition, gathered."""
    engine_tput = [rep["engine"]["throughput"]["executions_per_second"] for rep in reps]
    dbos_tput = [rep["dbos"]["throughput"]["workflows_per_second"] for rep in reps]
    engine_step = [rep["engine"]["per_step"]["step_wall_ms_p50"] for rep in reps]
    dbos_step = [rep["dbos"]["per_step"]["step_wall_ms_p50"] for rep in reps]
    engine_cpu = [rep["engine"]["per_step"]["step_cpu_ms"] for rep in reps]
    sdk_cpu = [rep["sdk_floor"]["step_cpu_ms"] for rep in reps]
    commits = [rep["engine"]["per_step"]["step_commits"] for rep in reps]
    return {
        "throughput_per_s": {
            "engine": spread(engine_tput, 1),
            "dbos": spread(dbos_tput, 1),
            "ratio": spread(ratios(engine_tput, dbos_tput)),
        },
        "step_p50_ms": {
            "engine": spread(engine_step),
            "dbos": spread(dbos_step),
            "ratio": spread(ratios(engine_step, dbos_step)),
            "sdk_floor": spread([rep["sdk_floor"]["step_wall_ms_p50"] for rep in reps]),
        },
        "step_cpu_ms": {
            "engine": spread(engine_cpu),
            "dbos": spread([rep["dbos"]["per_step"]["step_cpu_ms"] for rep in reps]),
            "sdk_floor": spread(sdk_cpu),
        },
        "cpu_beyond_sdk_ms": spread([engine - sdk for engine, sdk in zip(engine_cpu, sdk_cpu, strict=True)]),
        "commits_per_step": round(statistics.median(commits), 2),
    }


def _cells(values: list[float] | None) -> str:
    return " / ".join(f"{value:g}" for value in values) if values else ""


def table(results: dict[str, Any]) -> str:
    """A Markdown table of min / median / max for both systems and the ratios, and the timers."""
    tput, step, cpu = results["throughput_per_s"], results["step_p50_ms"], results["step_cpu_ms"]
    rows = [
        ("5-step executions/s (2 processes x 4 threads)", tput["engine"], tput["dbos"], tput["ratio"]),
        ("step overhead p50 wall, ms", step["engine"], step["dbos"], step["ratio"]),
        ("SDK's in-memory floor per step, wall ms", step["sdk_floor"], None, None),
        ("CPU per step, ms (engine: worker + sandbox)", cpu["engine"], cpu["dbos"], None),
        ("CPU per step beyond the SDK's own, ms", results["cpu_beyond_sdk_ms"], None, None),
        ("commits per step", [results["commits_per_step"]], None, None),
    ]
    lines = [
        f"| min / median / max over {results['repetitions_count']} repetitions | this engine "
        f"| DBOS {results['machine']['dbos']}, same run | ratio (engine / DBOS) |",
        "|---|---|---|---|",
        *(f"| {label} | {_cells(a)} | {_cells(b)} | {_cells(c)} |" for label, a, b, c in rows),
    ]
    if results.get("timers"):
        lines += ["", _timers_line(results["timers"])]
    return "\n".join(lines)


def _timers_line(timers: dict[str, Any]) -> str:
    return (
        f"Timers: {timers['count']} executions waiting {timers['timer_seconds']} s: lateness "
        f"(due -> resumed) p50 {timers['lateness_p50_s']} s, p99 {timers['lateness_p99_s']} s, "
        f"max {timers['lateness_max_s']} s; timer fired p50 {timers['fire_lateness_p50_s']} s, "
        f"p99 {timers['fire_lateness_p99_s']} s; lost {timers['lost']}, doubled {timers['doubled']}; "
        f"{timers['messages']} Celery messages for {timers['needed_invocations']} needed invocations "
        f"({timers['messages_per_invocation']:.2f} each; {timers['invocations']} Invocation rows, "
        f"{timers['queued_after']} still queued at the end); scheduler CPU {timers['scheduler_cpu_s']} s, "
        f"workers + sandboxes {timers['workers_cpu_s']} s over {timers['phase_s']} s "
        f"(starts took {timers['started_in_s']} s)."
    )
