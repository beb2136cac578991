"""Live updates for the console: told after commit which executions changed.

``notify`` is called (after commit, from any process that changed an
execution: web, worker, scheduler) with the execution's id. It must be cheap
and must never raise: it runs on the checkpoint path's after-commit hook.
"""

from __future__ import annotations


def notify(execution_id: int) -> None:
    """An execution changed; the console will push fresh fragments to its watchers."""
    del execution_id  # the console fills this in
