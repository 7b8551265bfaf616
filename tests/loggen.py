"""Generate a realistic decision log by running the service itself with a moving clock."""
from __future__ import annotations

import random

from schemas.request import DecideRequestSchema
from service.entrypoints.bootstrap import Services
from service.usecases.errors import Conflict, NotFound
from tests.conftest import NOW, PRODUCT_BASE, payload

PRODUCTS = list(PRODUCT_BASE)


def applicant(rng: random.Random, product: str) -> dict:
    changes: dict = {}
    roll = rng.random()
    if roll < 0.15:
        changes["age"] = rng.choice([17, 18, 19, 20, 21, 56, 61])
    elif roll < 0.25:
        changes["pay_score"] = rng.randint(500, 700)
    elif roll < 0.32:
        changes["monthly_income"] = rng.choice([3000, 6000, 9000])        # T2 cooling-off
    elif roll < 0.38:
        changes["health_score"] = rng.randint(40, 70)
    elif roll < 0.43:
        changes["groups"] = [rng.choice(["student", "overseas", "sme_owner"])]
        changes["documents"] = {"chsi_verified": True, "guardian_confirmed": rng.random() < 0.8,
                                "passport_verified": True, "domestic_guarantor": True,
                                "business_license": True, "cash_flow_verified": True}
    elif roll < 0.47:
        changes["bank_card_bound"] = False
    elif roll < 0.50:
        changes["credit_card_utilization"] = 0.9
    else:
        changes["age"] = rng.randint(18, 60)
    doc = payload(product, **changes)
    if rng.random() < 0.04:
        doc["applicant"].pop("health_score")                                # MISSING_DATA
    if rng.random() < 0.05:
        doc["amount"] = rng.choice([40000, 45000, 60000])
        doc["applicant"]["documents"]["repayment_proof"] = rng.random() < 0.5  # T4
    return doc


def generate(services: Services, decisions: int, users: int = 1500, seed: int = 11,
             prefix: str = "") -> int:
    """Make `decisions` decisions (plus some cancels and grace uses); returns log records written.

    `prefix` starts every user and application id: logs generated with different prefixes hold
    different users, so they can be made in parallel and concatenated."""
    rng = random.Random(seed)
    schema = DecideRequestSchema(term_ranges=services.rules.policy.book.term_ranges())
    clock = services.clock
    service = services.decisions
    clock.set(NOW)
    made = records = 0
    cooling: list[tuple[str, str]] = []
    while made < decisions:
        clock.advance(seconds=rng.randint(1, 900))
        user = f"{prefix}user-{rng.randrange(users)}"
        action = rng.random()
        if action < 0.02 and cooling:
            user_id, app_id = cooling.pop(rng.randrange(len(cooling)))
            try:
                service.cancel(user_id, app_id)
                records += 1
            except (Conflict, NotFound):   # past its window, or gone with the retention period
                pass
            continue
        if action < 0.03:
            try:
                service.use_grace(user, rng.randint(1, 3))
                records += 1
            except Conflict:
                pass
            continue
        doc = applicant(rng, rng.choice(PRODUCTS))
        doc["user_id"], doc["application_id"] = user, f"{prefix}app-{made}"
        result = service.decide(doc, schema.load(doc))
        made += 1
        records += 1
        if result.decision["outcome"] == "cooling_off":
            cooling.append((user, doc["application_id"]))
    return records
