"""The four benchmark subscriptions: four departments, four different field sets and purposes.

- hr_social_security: identity basics for data verification (unconditional: approved by the bus);
- civil_affairs: birth date and address for work reference (masked, pseudonymous ids);
- health: marital status for administrative basis (conditional: approved by the owner);
- education: education level for administrative basis (conditional).
Every set holds `name`, so each benchmark change is one delivery to each department.
"""

from __future__ import annotations

from datetime import datetime, timezone

from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import Subscription, SubscriptionRequest

LIBRARY = "population"
OWNER = "public_security"
FOUR = {
    "hr_social_security": (("citizen_id", "name", "sex", "household_region"), "data_verification"),
    "civil_affairs": (("citizen_id", "name", "date_of_birth", "household_address"), "work_reference"),
    "health": (("citizen_id", "name", "marital_status"), "administrative_basis"),
    "education": (("citizen_id", "name", "education_level"), "administrative_basis"),
}


def requests(departments: tuple[str, ...] = tuple(FOUR)) -> list[SubscriptionRequest]:
    return [SubscriptionRequest(department=department, library=LIBRARY, fields=FOUR[department][0],
                                purpose=FOUR[department][1]) for department in departments]


def approved_in_memory(catalog, registry, departments: tuple[str, ...] = tuple(FOUR)) -> list[Subscription]:
    """The same subscriptions approved without a broker (for the in-process hot path)."""
    now = datetime.now(timezone.utc)
    found = []
    for request in requests(departments):
        subscription = rules.evaluate(request, catalog, registry, now)
        for authority in subscription.awaiting:  # each conditional field's authority approves (issue 16)
            subscription = rules.approve(subscription, authority, now)
        found.append(subscription)
    return found
