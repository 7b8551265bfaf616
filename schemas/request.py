"""POST /decide request: API.md "Request".

Only application_id, user_id, product, amount and applicant.age are required by the schema.
Every other applicant field may be absent or null: a field a product's rules need but the
request leaves out is a MISSING_DATA reason, not a 400 (API.md). Unknown fields are a 400.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.fastload import FastLoadSchema
from schemas.fields import StrictBoolean, StrictDate, StrictNumber

PRODUCTS = ("weilidai", "we2000", "partner", "xiaoe", "zhouzhuanjin", "education", "emergency")
GROUPS = ("student", "overseas", "sme_owner", "blue_collar")
DOCUMENTS = ("chsi_verified", "guardian_confirmed", "passport_verified", "domestic_guarantor",
             "business_license", "cash_flow_verified", "work_badge_verified", "repayment_proof")

# The applicant's scalar fields and their kind; the fact the rules see is built from these.
APPLICANT_FIELDS: dict[str, str] = {
    "age": "number",
    "real_name_verified_at": "date",
    "id_card_expiry": "date",
    "pay_score": "number",
    "sesame_score": "number",
    "credit_score": "number",
    "monthly_income": "number",
    "payments_per_month": "number",
    "bank_card_bound": "bool",
    "credit_card_bound": "bool",
    "bureau_authorized": "bool",
    "bureau_major_adverse": "bool",
    "face_verified": "bool",
    "id_card_uploaded": "bool",
    "carrier_verified": "bool",
    "contacts_authorized": "bool",
    "whitelisted": "bool",
    "health_score": "number",
    "risk_education_done": "bool",
    "credit_applications_6m": "number",
    "night_device_switches_30d": "number",
    "credit_card_utilization": "number",
    "debt_to_income": "number",
    "concurrent_lenders": "number",
    "lingqiantong_balance": "number",
}

# API.md: `real_name_verified_at: null` means "not verified", not missing data. The rules read
# the derived boolean named here.
NULL_MEANS_NO = {"real_name_verified_at": "real_name_verified"}

ID_MAX_LENGTH = 128


def id_problems(value: str) -> list[str]:
    """What is wrong with a user or application id (empty: nothing). The same rules hold in a
    body and in a path: ids are path segments (`/users/<id>/state`), so `/` would make one
    unreachable, and control characters or lone surrogates would reach logs and keys."""
    problems = []
    if not 1 <= len(value) <= ID_MAX_LENGTH:
        problems.append(f"Length must be between 1 and {ID_MAX_LENGTH}.")
    if "/" in value:
        problems.append("Must not contain '/'.")
    # isprintable() is false for every Cc and Cs character (and for other ones): a cheap
    # pass for the ordinary id before the per-character look-up.
    if not value.isprintable() and any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        problems.append("Must not contain control characters.")
    return problems


def _valid_id(value: str) -> None:
    problems = id_problems(value)
    if problems:
        raise ValidationError(problems)


_ID = _valid_id
# The same rules for the OpenAPI document (a JSON Schema pattern: no '/', no C0/C1 controls).
ID_JSON_SCHEMA = {"type": "string", "minLength": 1, "maxLength": ID_MAX_LENGTH,
                  "pattern": "^[^/\\u0000-\\u001f\\u007f-\\u009f]*$"}


def _id_field() -> fields.String:
    return fields.String(required=True, validate=_ID,
                         metadata={k: v for k, v in ID_JSON_SCHEMA.items() if k != "type"})
_SCORE = validate.Range(min=0, max=1000)
_COUNT = validate.Range(min=0, max=100_000)
_RATIO = validate.Range(min=0, max=1)
_MONEY = validate.Range(min=0, max=1_000_000_000)


def _optional(field_cls, *args, **kwargs):
    return field_cls(*args, required=False, allow_none=True, **kwargs)


def _document():
    """Absent: the document is not claimed (false). Null: unknown, so MISSING_DATA (RULEBOOK)."""
    return StrictBoolean(load_default=False, allow_none=True)


class DocumentsSchema(Schema):
    class Meta:
        unknown = RAISE

    chsi_verified = _document()
    guardian_confirmed = _document()
    passport_verified = _document()
    domestic_guarantor = _document()
    business_license = _document()
    cash_flow_verified = _document()
    work_badge_verified = _document()
    repayment_proof = _document()


class ApplicantSchema(Schema):
    class Meta:
        unknown = RAISE

    age = StrictNumber(integer=True, required=True, validate=validate.Range(min=0, max=150))
    real_name_verified_at = _optional(StrictDate)
    id_card_expiry = _optional(StrictDate)
    pay_score = _optional(StrictNumber, validate=_SCORE)
    sesame_score = _optional(StrictNumber, validate=_SCORE)
    credit_score = _optional(StrictNumber, validate=_SCORE)
    monthly_income = _optional(StrictNumber, validate=_MONEY)
    payments_per_month = _optional(StrictNumber, validate=_COUNT)
    bank_card_bound = _optional(StrictBoolean)
    credit_card_bound = _optional(StrictBoolean)
    bureau_authorized = _optional(StrictBoolean)
    bureau_major_adverse = _optional(StrictBoolean)
    face_verified = _optional(StrictBoolean)
    id_card_uploaded = _optional(StrictBoolean)
    carrier_verified = _optional(StrictBoolean)
    contacts_authorized = _optional(StrictBoolean)
    whitelisted = _optional(StrictBoolean)
    health_score = _optional(StrictNumber, validate=validate.Range(min=0, max=100))
    risk_education_done = _optional(StrictBoolean)
    credit_applications_6m = _optional(StrictNumber, integer=True, validate=_COUNT)
    night_device_switches_30d = _optional(StrictNumber, integer=True, validate=_COUNT)
    credit_card_utilization = _optional(StrictNumber, validate=_RATIO)
    debt_to_income = _optional(StrictNumber, validate=_RATIO)
    concurrent_lenders = _optional(StrictNumber, integer=True, validate=_COUNT)
    lingqiantong_balance = _optional(StrictNumber, validate=_MONEY)
    # Absent means "no group" / "no document": groups and documents are claims the user makes,
    # and an unclaimed one is simply not there.
    groups = fields.List(fields.String(validate=validate.OneOf(GROUPS)), load_default=list,
                         validate=validate.Length(max=len(GROUPS)), metadata={"uniqueItems": True})
    documents = fields.Nested(DocumentsSchema, load_default=dict)

    @validates_schema
    def _no_repeated_groups(self, data, **kwargs):
        groups = data.get("groups") or []
        if len(set(groups)) != len(groups):
            raise ValidationError("Each group may be listed once.", "groups")


class DecideRequestSchema(FastLoadSchema):
    """The request; `term_ranges` (product -> (min, max) days) comes from the loaded rules.
    `load` of a valid request takes the loader compiled from these fields (schemas/fastload.py);
    `load_plain` is marshmallow's field-by-field load, with the same results and errors."""

    class Meta:
        unknown = RAISE

    application_id = _id_field()
    user_id = _id_field()
    product = fields.String(required=True, validate=validate.OneOf(PRODUCTS))
    amount = StrictNumber(required=True, validate=validate.Range(min=0, min_inclusive=False,
                                                                max=1_000_000_000))
    term_days = _optional(StrictNumber, integer=True, validate=validate.Range(min=1, max=100_000))
    applicant = fields.Nested(ApplicantSchema, required=True)

    def __init__(self, *args, term_ranges: dict[str, tuple[int, int]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.term_ranges = term_ranges or {}

    @validates_schema(skip_on_field_errors=False)
    def _term_in_product_range(self, data, **kwargs):
        term, product = data.get("term_days"), data.get("product")
        if not isinstance(term, int) or term is None or product not in self.term_ranges:
            return
        low, high = self.term_ranges[product]
        if not low <= term <= high:
            raise ValidationError(f"Must be between {low} and {high} days for product {product}.",
                                  "term_days")


def canonical_request(payload: Mapping[str, Any]) -> dict:
    """A valid request in one canonical form, so that equivalent requests compare equal:
    integral numbers as ints (`4000.0` is `4000`), defaults left out (a `false` document, an
    empty `groups`, a `null` optional field), groups in order. `real_name_verified_at: null`
    stays: it means "not verified", unlike an absent key (NULL_MEANS_NO)."""
    out = {k: _canonical_number(v) for k, v in payload.items() if k != "applicant"}
    if out.get("term_days", 0) is None:
        del out["term_days"]
    applicant = dict(payload.get("applicant") or {})
    canon: dict[str, Any] = {}
    for key, value in applicant.items():
        if key == "groups":
            if value:
                canon[key] = sorted(value)
        elif key == "documents":
            docs = {k: v for k, v in (value or {}).items() if v is not False}
            if docs:
                canon[key] = docs
        elif value is not None or key in NULL_MEANS_NO:
            canon[key] = _canonical_number(value)
    out["applicant"] = canon
    return out


def _canonical_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class CancelRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    user_id = _id_field()


class GraceRequestSchema(Schema):
    """POST /users/<id>/grace-uses: one repayment grace use (T5) of `days` days."""

    class Meta:
        unknown = RAISE

    days = StrictNumber(integer=True, required=True)

    def __init__(self, *args, max_days: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_days = max_days

    @validates_schema
    def _within_limit(self, data, **kwargs):
        if not 1 <= data["days"] <= self.max_days:
            raise ValidationError(f"Must be between 1 and {self.max_days}.", "days")


__all__ = ["DecideRequestSchema", "id_problems", "canonical_request", "ID_MAX_LENGTH", "ID_JSON_SCHEMA", "CancelRequestSchema", "GraceRequestSchema", "APPLICANT_FIELDS", "NULL_MEANS_NO",
           "PRODUCTS", "GROUPS", "DOCUMENTS"]
