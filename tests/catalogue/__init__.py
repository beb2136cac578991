"""Differential-conformance catalogue.

Durable handlers (``handlers*.py``), the cases that drive them (``cases.py``),
a driver for the SDK's in-memory reference service (``reference.py``) and the
outcome normalisation both backends are compared with (``normalize.py``).
"""
