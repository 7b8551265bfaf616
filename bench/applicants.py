"""Seeded, realistic POST /decide payloads for the benchmarks (engine.py, bodies.py).

Every payload starts from the API.md example (approved for weilidai) made into an approval
for its product, then one scenario is applied:

- approved      varied but passing values (ages, scores, tiers, amounts within every cap)
- rejected      1-3 failing checks (E1-E11, R1-R5, amount out of range)
- missing       1-3 needed applicant fields left out or null (MISSING_DATA, review)
- group         student / overseas / sme_owner / blue_collar, documents complete or not,
                amounts over the group cap
- elderly       age 60+ (60 is approved with the elderly_care flag, above is rejected)

Dates are relative to the `now` the generator is given, so a payload keeps its meaning on
any day. Payloads are plain JSON-able dicts, not yet validated.
"""
from __future__ import annotations

import copy
import datetime as dt
import random
import sys
from pathlib import Path
from typing import Any, Callable

PRODUCTS = ("weilidai", "we2000", "partner", "xiaoe", "zhouzhuanjin", "education", "emergency")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repo, for tests/

# API.md "Request" (the tests' copy: one definition of the example).
from tests.conftest import EXAMPLE  # noqa: E402

# products.yaml ranges (min, max) and the caps an approval must stay under.
RANGE = {"weilidai": (500, 200000), "we2000": (500, 5000), "partner": (1000, 200000),
         "xiaoe": (500, 50000), "zhouzhuanjin": (50000, 500000), "education": (10000, 100000),
         "emergency": (500, 5000)}
CONSUMER = {p for p in PRODUCTS if p != "zhouzhuanjin"}
GROUP_CAP = {"student": 5000, "overseas": 30000, "sme_owner": 100000}

# Applicant fields some product's rules read (age is required by the schema, never missing).
NEEDED_FIELDS = ("id_card_expiry", "pay_score", "credit_score", "payments_per_month",
                 "bank_card_bound", "bureau_authorized", "bureau_major_adverse", "face_verified",
                 "health_score", "risk_education_done", "credit_applications_6m",
                 "night_device_switches_30d", "credit_card_utilization", "debt_to_income",
                 "concurrent_lenders")
PRODUCT_NEEDED = {"weilidai": ("credit_card_bound", "whitelisted", "real_name_verified_at"),
                  "we2000": ("id_card_uploaded", "lingqiantong_balance"),
                  "partner": ("sesame_score", "carrier_verified", "contacts_authorized")}

SCENARIOS = (("approved", 30), ("rejected", 30), ("missing", 12), ("group", 18), ("elderly", 10))


def _day(now: dt.datetime, days: int) -> str:
    return (now.date() + dt.timedelta(days=days)).isoformat()


def _money(rng: random.Random, low: float, high: float) -> int:
    """A round-ish amount in [low, high] (multiples of 100)."""
    low_h, high_h = int(-(-low // 100)), int(high // 100)
    return 100 * rng.randint(low_h, max(low_h, high_h))


def approved(rng: random.Random, product: str, now: dt.datetime) -> dict:
    """A payload that passes every rule of `product` (groups: none or a badge-holding blue-collar)."""
    p = copy.deepcopy(EXAMPLE)
    a = p["applicant"]
    p["product"] = product
    p["term_days"] = rng.choice((7, 14, 30, 90, 180, 365, 720, 1095))
    a.update({
        "age": rng.randint(20, 55),
        "real_name_verified_at": _day(now, -rng.randint(400, 3000)),
        "id_card_expiry": _day(now, rng.randint(120, 3650)),
        "pay_score": rng.randint(620, 900),
        "credit_score": rng.randint(550, 850),
        "monthly_income": _money(rng, 3000, 60000),
        "health_score": rng.randint(60, 100),
        "credit_applications_6m": rng.randint(0, 2),
        "night_device_switches_30d": rng.randint(0, 3),
        "credit_card_utilization": round(rng.uniform(0, 0.85), 2),
        "debt_to_income": round(rng.uniform(0, 0.5), 2),
        "concurrent_lenders": rng.randint(0, 3),
        "lingqiantong_balance": _money(rng, 0, 120000),
    })
    if rng.random() < 0.5:
        a["groups"] = []
        a["documents"]["work_badge_verified"] = False
    high_tier = rng.random() < 0.25
    a["payments_per_month"] = rng.randint(150, 400) if high_tier else rng.randint(8, 149)
    low, high = RANGE[product]
    if product == "weilidai" and not high_tier:
        high = 30000                                   # TIER_LIMIT active
    if product == "we2000" and a["lingqiantong_balance"] < 50000:
        high = 2000                                    # WE2000_LINE
    if product == "partner":
        a.update({"sesame_score": rng.randint(560, 900), "carrier_verified": True,
                  "contacts_authorized": True, "age": rng.randint(20, 55)})
    if product == "zhouzhuanjin":
        a["documents"].update({"business_license": True, "cash_flow_verified": True})
    # most people ask for modest amounts
    p["amount"] = _money(rng, low, min(high, low + (high - low) * rng.choice((0.05, 0.2, 1.0))))
    return p


# --- failing checks: each makes one rule fire -------------------------------------------

def _fail(field: str, value: Callable[[random.Random, dt.datetime], Any]):
    def apply(rng, p, now):
        p["applicant"][field] = value(rng, now)
    return apply


def _amount_over(rng, p, now):
    p["amount"] = _money(rng, RANGE[p["product"]][1] + 100, RANGE[p["product"]][1] * 2)


def _amount_under(rng, p, now):
    p["amount"] = _money(rng, 100, RANGE[p["product"]][0] - 100) if RANGE[p["product"]][0] > 200 else 100


def _debt(rng, p, now):
    if rng.random() < 0.5:
        p["applicant"]["debt_to_income"] = round(rng.uniform(0.51, 0.95), 2)
    else:
        p["applicant"]["concurrent_lenders"] = rng.randint(4, 9)


FAILURES: dict[str, Callable] = {
    "REAL_NAME_NOT_VERIFIED": _fail("real_name_verified_at", lambda r, n: None),
    "AGE_OUT_OF_RANGE": _fail("age", lambda r, n: r.choice((16, 17, 61, 64))),
    "PAY_SCORE_TOO_LOW": _fail("pay_score", lambda r, n: r.randint(300, 545)),
    "CARD_NOT_BOUND": _fail("bank_card_bound", lambda r, n: False),
    "BUREAU_NOT_AUTHORIZED": _fail("bureau_authorized", lambda r, n: False),
    "BUREAU_ADVERSE_RECORD": _fail("bureau_major_adverse", lambda r, n: True),
    "IDENTITY_DOCS_INCOMPLETE": _fail("face_verified", lambda r, n: False),
    "HEALTH_SCORE_TOO_LOW": _fail("health_score", lambda r, n: r.randint(10, 59)),
    "RISK_EDUCATION_REQUIRED": _fail("risk_education_done", lambda r, n: False),
    "TOO_MANY_APPLICATIONS": _fail("credit_applications_6m", lambda r, n: r.randint(3, 9)),
    "ID_CARD_EXPIRING": _fail("id_card_expiry", lambda r, n: _day(n, r.randint(-30, 80))),
    "DEVICE_SWITCHING": _fail("night_device_switches_30d", lambda r, n: r.randint(4, 12)),
    "CREDIT_UTILIZATION_HIGH": _fail("credit_card_utilization", lambda r, n: round(r.uniform(0.86, 1), 2)),
    "DEBT_TOO_HIGH": _debt,
    "AMOUNT_OUT_OF_RANGE": _amount_over,
    "AMOUNT_BELOW_RANGE": _amount_under,
}
PRODUCT_FAILURES: dict[str, dict[str, Callable]] = {
    "weilidai": {
        "REAL_NAME_TOO_RECENT": _fail("real_name_verified_at", lambda r, n: _day(n, -r.randint(10, 360))),
        "LOW_ACTIVITY": _fail("payments_per_month", lambda r, n: r.randint(3, 7)),
        "NOT_WHITELISTED": _fail("whitelisted", lambda r, n: False),
        "CREDIT_CARD_NOT_BOUND": _fail("credit_card_bound", lambda r, n: False),
    },
    "we2000": {"ID_CARD_NOT_UPLOADED": _fail("id_card_uploaded", lambda r, n: False)},
    "partner": {
        "SESAME_TOO_LOW": _fail("sesame_score", lambda r, n: r.randint(350, 540)),
        "CARRIER_NOT_VERIFIED": _fail("carrier_verified", lambda r, n: False),
        "AGE_OVER_PARTNER": _fail("age", lambda r, n: r.randint(56, 60)),
    },
    "zhouzhuanjin": {"NO_BUSINESS_LICENSE":
                     lambda r, p, n: p["applicant"]["documents"].update(business_license=False)},
}


def rejected(rng, product, now):
    p = approved(rng, product, now)
    pool = {**FAILURES, **PRODUCT_FAILURES.get(product, {})}
    k = rng.choices((1, 2, 3), weights=(60, 28, 12))[0]
    for name in rng.sample(sorted(pool), k):
        pool[name](rng, p, now)
    return p


def missing(rng, product, now):
    p = approved(rng, product, now)
    pool = NEEDED_FIELDS + PRODUCT_NEEDED.get(product, ())
    for name in rng.sample(pool, rng.choices((1, 2, 3), weights=(65, 25, 10))[0]):
        if name == "real_name_verified_at":
            del p["applicant"][name]           # null means "not verified"; only absent is missing
        elif rng.random() < 0.5:
            del p["applicant"][name]
        else:
            p["applicant"][name] = None
    if rng.random() < 0.2:                     # missing data next to a failing check
        FAILURES[rng.choice(sorted(FAILURES))](rng, p, now)
    return p


def group(rng, product, now):
    p = approved(rng, product, now)
    a, docs = p["applicant"], p["applicant"]["documents"]
    groups = rng.sample(("student", "overseas", "sme_owner", "blue_collar"),
                        rng.choices((1, 2), weights=(85, 15))[0])
    a["groups"] = groups
    complete = rng.random() < 0.6
    for g in groups:
        if g == "student":
            a["age"] = rng.randint(18, 24)
            docs.update(chsi_verified=complete or rng.random() < 0.5, guardian_confirmed=complete)
        elif g == "overseas":
            docs.update(passport_verified=complete, domestic_guarantor=complete or rng.random() < 0.5)
        elif g == "sme_owner":
            docs.update(business_license=complete or product == "zhouzhuanjin",
                        cash_flow_verified=complete or rng.random() < 0.5)
        else:
            docs["work_badge_verified"] = complete
            if complete and rng.random() < 0.5:
                a["pay_score"] = rng.randint(580, 620)     # E3 badge uplift (and its 550 floor)
    caps = [GROUP_CAP[g] for g in groups if g in GROUP_CAP]
    if product in CONSUMER and caps:
        cap, (low, high) = min(caps), RANGE[product]
        if rng.random() < 0.3 and cap < high:
            p["amount"] = _money(rng, max(low, cap + 100), min(high, cap * 2))   # over the group cap
        elif p["amount"] > cap and low <= cap:
            p["amount"] = _money(rng, low, cap)
    return p


def elderly(rng, product, now):
    p = approved(rng, product, now)
    p["applicant"]["age"] = rng.choice((60, 60, 60, 61, 63, 65, 68, 72))
    if rng.random() < 0.2:
        FAILURES[rng.choice(sorted(FAILURES))](rng, p, now)
    return p


GENERATORS = {"approved": approved, "rejected": rejected, "missing": missing, "group": group,
              "elderly": elderly}


def generate(n: int, seed: int, now: dt.datetime) -> list[tuple[str, dict]]:
    """n (scenario, payload) pairs; the same seed and day give the same payloads."""
    rng = random.Random(seed)
    names = [name for name, _ in SCENARIOS]
    weights = [w for _, w in SCENARIOS]
    out = []
    for i in range(n):
        scenario = rng.choices(names, weights)[0]
        product = PRODUCTS[i % len(PRODUCTS)] if i < len(PRODUCTS) else rng.choice(PRODUCTS)
        payload = GENERATORS[scenario](rng, product, now)
        payload["application_id"] = f"bench-{seed}-{i:07d}"
        payload["user_id"] = f"u-bench-{rng.randint(1, max(1, n // 2)):07d}"
        out.append((scenario, payload))
    return out
