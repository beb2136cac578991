"""The test suite's settings: the production settings with a fast password hasher.

Django's own advice for test suites: PBKDF2's deliberate slowness (about 0.4 s per
hash here) is not what any test checks, and every browser test pays it twice (creating
its user, then the server checking the login). Processes the tests start (console
servers, workers) inherit ``DJANGO_SETTINGS_MODULE`` and use it too; the deployment
check (``tests/test_hardening.py``) runs the production module itself.
"""

from durable_console.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
