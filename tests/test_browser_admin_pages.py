"""An admin manages API keys in the console, in headless Chromium, against a real server process.

One flow (a console server costs seconds): a member of the admins group (no superuser, no staff
flag) creates a key from the nav, reads the once-only secret, and a real boto3 client signs with
it against the same server; after Revoke the same client is refused.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.contrib.auth.models import Group, User

from durable_console.bootstrap import register_demo_functions
from executions.access import ensure_groups
from executions.models import AccessKey
from tests.browser_support import LiveConsole, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-test-password"


def lambda_client(url: str, key_id: str, secret: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=settings.DURABLE_REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_an_admin_creates_a_key_uses_it_with_boto3_then_revokes_it(
    live_console: LiveConsole, page: Any
) -> None:
    from playwright.sync_api import expect

    register_demo_functions()
    ensure_groups()
    alice = User.objects.create_user("alice", "alice@example.com", PASSWORD)
    alice.groups.add(Group.objects.get(name="admins"))
    log_in(page, live_console, "alice", PASSWORD)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_console.url)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.click("#key-create")
    page.fill("input[name=description]", "boto3 from the console")
    expect(page.locator("select[name=owner] option:checked")).to_have_text("alice")
    page.click("#key-submit")
    expect(page.locator("#key-created")).to_be_visible()
    key_id, secret = page.inner_text("#key-id").strip(), page.inner_text("#key-secret").strip()
    page.click("#copy-secret")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "admin-api-key-created")

    client = lambda_client(live_console.url, key_id, secret)
    names = {f["FunctionName"] for f in client.list_functions()["Functions"]}
    assert "booking" in names
    assert client.get_function(FunctionName="booking")["Configuration"]["FunctionName"] == "booking"

    page.click("#key-done")  # the list: used just now, acting as alice; the secret is gone
    row = page.locator(f"#key-{key_id}")
    expect(row.get_by_test_id("key-last-used")).not_to_have_text("never")
    expect(row).to_contain_text("alice")
    assert secret not in page.content()
    screenshot(page, "admin-api-keys")

    row.get_by_test_id("key-revoke").click()
    page.click("#confirm-revoke")
    expect(page.locator(f"#key-{key_id}").get_by_test_id("key-state")).to_contain_text("revoked")
    assert AccessKey.objects.get(access_key_id=key_id).revoked_at is not None
    with pytest.raises(ClientError) as refused:
        client.list_functions()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.click("#user-table >> text=alice")
    expect(page.locator("#user-deactivate")).to_have_count(0)  # no locking oneself out
    expect(page.locator("#id_groups_0")).to_be_checked()  # admins
    screenshot(page, "admin-user")
