"""The durable engine: the state machine and the only code that changes execution state.

Checkpoints, validation, invocations, callbacks, chained invokes, timers, lifecycle actions,
the unit of change and its after-commit effects, and the row I/O of the hot path. It imports
no view, task, consumer or template. See docs/architecture.md."""
