"""The format of the files in `rules/`: validated at load time so a bad file is refused at start-up.

These schemas check shape and types; `service.domain.rulebook` then checks meaning (fields exist,
parameters are defined, one reason code means one thing).
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.fields import StrictBoolean
from schemas.request import APPLICANT_FIELDS, DOCUMENTS
from schemas.response import REASON_CODES

_NAME = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$", error="Must be an identifier (letters, digits, _).")


# A calendar offset stays within two centuries of today, so 'today + offset' is always a date.
_OFFSET_BOUNDS = {"years": 200, "months": 2400, "days": 73000}


class ParamValue(fields.Field):
    """A number, a boolean, or a calendar offset {years|months|days: int} from today."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or isinstance(value, (int, float)):
            return value
        if isinstance(value, dict) and value and set(value) <= set(_OFFSET_BOUNDS) \
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            for unit, number in value.items():
                if abs(number) > _OFFSET_BOUNDS[unit]:
                    raise ValidationError(f"{unit}: at most {_OFFSET_BOUNDS[unit]} either way.")
            return dict(value)
        raise ValidationError("Must be a number, true/false, or {years|months|days: integer}.")


class Condition(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, dict)):
            return value
        raise ValidationError("Must be a comparison string or {all|any: [...]}.")


class Products(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value in ("all", "consumer"):
            return value
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            return list(value)
        raise ValidationError("Must be 'all', 'consumer' or a list of product names.")


class ReasonSchema(Schema):
    class Meta:
        unknown = RAISE

    code = fields.String(required=True, validate=validate.OneOf(REASON_CODES))
    outcome = fields.String(required=True, validate=validate.OneOf(["rejected", "review"]))
    starts_cooldown = StrictBoolean(required=True)
    message_zh = fields.String(required=True, validate=validate.Length(min=1))
    message_en = fields.String(required=True, validate=validate.Length(min=1))
    advice_zh = fields.String(required=True, validate=validate.Length(min=1))
    advice_en = fields.String(required=True, validate=validate.Length(min=1))


class PricingSchema(Schema):
    class Meta:
        unknown = RAISE

    rate_multiplier = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    use_floor = StrictBoolean()

    @validates_schema
    def _exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ValidationError("Give exactly one of rate_multiplier, use_floor.")


class RuleSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Length(min=1))
    check = fields.String(required=True, validate=_NAME)
    products = Products(required=True)
    when = Condition()
    params = fields.Dict(keys=fields.String(validate=_NAME), values=ParamValue(), load_default=dict)
    product_params = fields.Dict(keys=fields.String(),
                                 values=fields.Dict(keys=fields.String(validate=_NAME), values=ParamValue()),
                                 load_default=dict)
    limit = fields.String(validate=validate.Regexp(r"^\$[A-Za-z_][A-Za-z0-9_.]*$",
                                                   error="Must be a $parameter."))
    reason = fields.Nested(ReasonSchema)
    flag = fields.String(validate=_NAME)
    pricing = fields.Nested(PricingSchema)
    cooling_off = StrictBoolean(validate=validate.Equal(True))

    @validates_schema
    def _one_effect(self, data, **kwargs):
        effects = [k for k in ("reason", "flag", "pricing", "cooling_off") if k in data]
        if len(effects) != 1:
            raise ValidationError("A rule has exactly one effect: reason, flag, pricing or cooling_off.")
        if "limit" in data and "reason" not in data:
            raise ValidationError("'limit' goes with a reason (AMOUNT_OUT_OF_RANGE).", "limit")
        if "when" not in data and data.get("reason", {}).get("code") != "MISSING_DATA":
            raise ValidationError("Missing 'when': only the MISSING_DATA template has none.", "when")


class RuleFileSchema(Schema):
    class Meta:
        unknown = RAISE

    params = fields.Dict(keys=fields.String(validate=_NAME), values=ParamValue(), load_default=dict)
    rules = fields.List(fields.Nested(RuleSchema), required=True, validate=validate.Length(min=1))


# How `largest_allowed_amount` is found. Rules versions written before the setting
# existed lack it and keep their behaviour, so their logged decisions replay unchanged.
LARGEST_ALLOWED_MODES = ("smallest_broken_limit", "smallest_applicable_limit")
# the first of each is what rules versions without the setting did
REVIEW_APPROVAL_MODES = ("amount_asked", "least_favourable_limit")


class LimitsFileSchema(RuleFileSchema):
    """limits.yaml: rules, plus how the largest allowed amount is derived from the limits and
    what a reviewer's approval may offer."""

    largest_allowed_amount = fields.String(validate=validate.OneOf(LARGEST_ALLOWED_MODES),
                                           load_default=LARGEST_ALLOWED_MODES[0])
    review_approval_amount = fields.String(validate=validate.OneOf(REVIEW_APPROVAL_MODES),
                                           load_default=REVIEW_APPROVAL_MODES[0])


class ProductSchema(Schema):
    class Meta:
        unknown = RAISE

    name_zh = fields.String(required=True)
    min_amount = fields.Float(required=True, validate=validate.Range(min=0))
    max_amount = fields.Float(required=True, validate=validate.Range(min=0))
    term_days_min = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    term_days_max = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    base_daily_rate = fields.Float(required=True, validate=validate.Range(min=0))
    floor_apr = fields.Float(required=True, validate=validate.Range(min=0))
    max_apr = fields.Float(required=True, validate=validate.Range(min=0))
    consumer = StrictBoolean(required=True)
    interest_free_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data["min_amount"] > data["max_amount"]:
            raise ValidationError("min_amount is above max_amount.")
        if data["term_days_min"] > data["term_days_max"]:
            raise ValidationError("term_days_min is above term_days_max.")
        if data["floor_apr"] > data["max_apr"]:
            raise ValidationError("floor_apr is above max_apr.")


class ProductsFileSchema(Schema):
    class Meta:
        unknown = RAISE

    apr_cap = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    rate_decimals = fields.Integer(required=True, strict=True, validate=validate.Range(min=2, max=12))
    products = fields.Dict(keys=fields.String(), values=fields.Nested(ProductSchema), required=True)

    @validates_schema
    def _under_cap(self, data, **kwargs):
        for name, product in data.get("products", {}).items():
            if product["max_apr"] > data["apr_cap"]:
                raise ValidationError(f"{name}: max_apr is above apr_cap.", "products")


class TemporaryLimitSchema(Schema):
    class Meta:
        unknown = RAISE

    increase = fields.Float(required=True, validate=validate.Range(min=0))
    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    max_grants = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    requires_document = fields.String(required=True, validate=validate.OneOf(DOCUMENTS))
    applies_while_active = StrictBoolean(load_default=False)


class GraceSchema(Schema):
    class Meta:
        unknown = RAISE

    max_uses = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    max_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    period_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class StateReasonSchema(Schema):
    class Meta:
        unknown = RAISE

    rule_id = fields.String(required=True)
    message_zh = fields.String(required=True, validate=validate.Length(min=1))
    message_en = fields.String(required=True, validate=validate.Length(min=1))
    advice_zh = fields.String(required=True, validate=validate.Length(min=1))
    advice_en = fields.String(required=True, validate=validate.Length(min=1))


class TimeFileSchema(RuleFileSchema):
    reapply_window_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    cooling_off_hours = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    application_count_months = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    temporary_limit = fields.Nested(TemporaryLimitSchema, required=True)
    grace = fields.Nested(GraceSchema, required=True)
    human_review_days = fields.Integer(strict=True, validate=validate.Range(min=0, max=3650),
                                       load_default=None)
    review_claim_minutes = fields.Integer(strict=True, validate=validate.Range(min=1, max=24 * 60),
                                          load_default=None)
    review_sla_hours = fields.Integer(strict=True, validate=validate.Range(min=1, max=24 * 365),
                                      load_default=None)
    state_reasons = fields.Dict(
        keys=fields.String(validate=validate.OneOf(["REAPPLY_COOLDOWN", "COOLING_OFF_PENDING"])),
        values=fields.Nested(StateReasonSchema), required=True,
        validate=validate.Length(equal=2, error="Give both REAPPLY_COOLDOWN and COOLING_OFF_PENDING."))
    rules = fields.List(fields.Nested(RuleSchema), load_default=list)


# -- recourse.yaml ---------------------------------------------------------------------------------
# The request paths an applicant could change, and what each action does (rulebook checks which
# action fits which field's kind).
REQUEST_PATHS = (("amount", "term_days") + tuple(f"applicant.{n}" for n in APPLICANT_FIELDS)
                 + tuple(f"applicant.documents.{d}" for d in DOCUMENTS))
RECOURSE_ACTIONS = ("amount", "term", "set", "today", "wait")


class RecourseSearchSchema(Schema):
    class Meta:
        unknown = RAISE

    max_evaluations = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    max_fields = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=6))
    max_options = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=20))


class ActionableSchema(Schema):
    class Meta:
        unknown = RAISE

    field = fields.String(required=True, validate=validate.OneOf(REQUEST_PATHS))
    action = fields.String(required=True, validate=validate.OneOf(RECOURSE_ACTIONS))
    to = StrictBoolean()

    @validates_schema
    def _to_with_set(self, data, **kwargs):
        if (data.get("action") == "set") != ("to" in data):
            raise ValidationError("'to' goes with action 'set', and only with it.", "to")


class RecourseFileSchema(Schema):
    class Meta:
        unknown = RAISE

    search = fields.Nested(RecourseSearchSchema, required=True)
    state_waits = fields.List(fields.String(validate=validate.OneOf(
        ["REAPPLY_COOLDOWN", "COOLING_OFF_PENDING"])), load_default=list)
    actionable = fields.List(fields.Nested(ActionableSchema), required=True)


# -- explanations.yaml (optional) -----------------------------------------------------------------
# The summary that opens an explanation (API.md "Applicant rights"), in each language, for each
# outcome the rules give and each a reviewer gives; the placeholders are checked by the rulebook.
LANGUAGES = ("zh", "en")
_SUMMARY = validate.Length(min=1, max=500)


class SummaryTextsSchema(Schema):
    class Meta:
        unknown = RAISE

    zh = fields.String(required=True, validate=_SUMMARY)
    en = fields.String(required=True, validate=_SUMMARY)


class RulesSummariesSchema(Schema):
    """The rules' own outcomes."""

    class Meta:
        unknown = RAISE

    approved = fields.Nested(SummaryTextsSchema, required=True)
    cooling_off = fields.Nested(SummaryTextsSchema, required=True)
    rejected = fields.Nested(SummaryTextsSchema, required=True)
    review = fields.Nested(SummaryTextsSchema, required=True)


class ReviewerSummariesSchema(Schema):
    """A reviewer's outcomes (API.md "Human review")."""

    class Meta:
        unknown = RAISE

    approved = fields.Nested(SummaryTextsSchema, required=True)
    rejected = fields.Nested(SummaryTextsSchema, required=True)


class SummariesSchema(Schema):
    class Meta:
        unknown = RAISE

    rules = fields.Nested(RulesSummariesSchema, required=True)
    reviewer = fields.Nested(ReviewerSummariesSchema, required=True)


class ExplanationsFileSchema(Schema):
    class Meta:
        unknown = RAISE

    summaries = fields.Nested(SummariesSchema, required=True)
    # a product's name in a language ({product}); zh defaults to products.yaml name_zh
    product_names = fields.Dict(keys=fields.String(validate=validate.OneOf(LANGUAGES)),
                                values=fields.Dict(keys=fields.String(),
                                                   values=fields.String(validate=validate.Length(min=1, max=100))),
                                load_default=dict)


__all__ = ["RuleFileSchema", "LimitsFileSchema", "ProductsFileSchema", "TimeFileSchema",
           "RecourseFileSchema", "ExplanationsFileSchema"]
