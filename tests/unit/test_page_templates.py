"""The admin tool pages' and the seller area's templates, rendered by the engine the app uses: every piece of
user text (e-mails, names, titles, errors, audit details) is escaped, and each row's form carries the CSRF token
and the list's filters."""

from __future__ import annotations

from datetime import UTC, datetime

from market.adapters.http.admin_pages import NOTHING, Outcome
from market.adapters.http.templating import template_engine
from market.domain.admin import AuditAction, AuditEntry, AuditTarget
from market.domain.catalog import Item, ItemStatus
from market.domain.money import Money
from market.domain.users import Role, User
from market.domain.webhooks import DeliveryRecord, DeliveryStatus

SCRIPT = "<script>alert('owned')</script>"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
COMMON = {
    "email": f"admin{SCRIPT}@example.com",
    "csrf_token": "c" * 64,
    "filter_errors": [],
    "next_url": None,
}


def render(name: str, **context: object) -> str:
    return template_engine().get_template(name).render(**{**COMMON, **context})


def test_the_users_page_escapes_names_and_keeps_filters_in_each_form():
    user = User("u1", f"x{SCRIPT}@example.com", SCRIPT, Role.SELLER, "hash", NOW)
    page = render(
        "admin/users.html",
        form={"q": f'"{SCRIPT}', "role": "", "status": "", "cursor": ""},
        outcome=Outcome(error=SCRIPT, status=409),
        users=[user],
        roles=("buyer", "seller", "admin"),
        statuses=("active", "disabled"),
    )
    assert "<script" not in page and "hash" not in page
    assert page.count('name="csrf_token" value="' + "c" * 64 + '"') == 2  # the row's form and sign-out
    assert 'name="q" value="&#34;&lt;script&gt;' in page  # the filter, kept (escaped) in the row's form
    assert "<option selected>seller</option>" in page


def test_the_moderation_and_audit_pages_escape_titles_reasons_and_details():
    item = Item("i1", "s1", SCRIPT, "d", Money(100, "EUR"), 1, "c", ItemStatus.SUSPENDED, NOW, NOW)
    items = render(
        "admin/items.html",
        form={"status": "suspended", "q": "", "seller_id": "", "cursor": ""},
        outcome=Outcome(notice=SCRIPT),
        items=[item],
        statuses=("active", "archived", "suspended"),
        max_reason=500,
    )
    entry = AuditEntry(
        "a1", NOW, "u1", AuditAction.ITEM_MODERATED, AuditTarget.ITEM, "i1", {"reason": SCRIPT}
    )
    audit = render(
        "admin/audit.html",
        form={"actor_id": SCRIPT, "action": "", "target_id": "", "from": "", "to": "", "cursor": ""},
        outcome=NOTHING,
        entries=[entry],
        actions=("item.moderated",),
    )
    for page in (items, audit):
        assert "<script" not in page and "&lt;script&gt;" in page


def test_the_deliveries_table_offers_retry_for_failed_deliveries_only():
    def record(status: DeliveryStatus) -> DeliveryRecord:
        return DeliveryRecord(f"d-{status.value}", "s1", "order.paid", status, 1, 500, SCRIPT, None, NOW, NOW)

    page = render(
        "seller/deliveries.html",
        form={"cursor": ""},
        outcome=NOTHING,
        deliveries=[record(DeliveryStatus.FAILED), record(DeliveryStatus.DELIVERED)],
        retryable=frozenset({"pending", "failed"}),
    )
    assert page.count('data-testid="retry-delivery"') == 1
    assert 'action="/seller/deliveries/d-failed/retry"' in page
    assert "<script" not in page and "HTTP 500" in page
