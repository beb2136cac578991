"""The processes that run handlers: worker invokers, sandbox supervisor and children, the
embedded pool, and the scheduler that finds due work. See docs/architecture.md."""
