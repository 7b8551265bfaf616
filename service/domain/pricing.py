"""The offer's rates: product base rate, tier adjustments, floor and ceiling (RULEBOOK "Pricing").

Decimal arithmetic with one rounding rule (half-up to `rate_decimals`) so a replay reproduces
every rate exactly. The floor is rounded up and the ceiling down, so the APR shown is never
below the product's floor nor above its ceiling or the global cap.
"""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping

from service.domain.rulebook import Product

DAYS_PER_MONTH = 30   # RULEBOOK: monthly = daily x 30
DAYS_PER_YEAR = 365   # RULEBOOK: APR = daily x 365


def _d(value: float) -> Decimal:
    return Decimal(str(value))


def rates(product: Product, adjustments: Iterable[Mapping], apr_cap: float,
          decimals: int) -> tuple[float, float, float]:
    """(daily, monthly, apr) after applying the fired pricing rules in rule-file order."""
    quantum = Decimal(1).scaleb(-decimals)
    floor = (_d(product.floor_apr) / DAYS_PER_YEAR).quantize(quantum, ROUND_CEILING)
    ceiling = (min(_d(product.max_apr), _d(apr_cap)) / DAYS_PER_YEAR).quantize(quantum, ROUND_FLOOR)
    daily = _d(product.base_daily_rate)
    use_floor = False
    for adjustment in adjustments:
        if "rate_multiplier" in adjustment:
            daily *= _d(adjustment["rate_multiplier"])
        if adjustment.get("use_floor"):
            use_floor = True
    daily = floor if use_floor else daily.quantize(quantum, ROUND_HALF_UP)
    daily = min(max(daily, floor), ceiling)
    return float(daily), float(daily * DAYS_PER_MONTH), float(daily * DAYS_PER_YEAR)
