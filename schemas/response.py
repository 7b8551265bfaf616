"""POST /decide response and the error document: API.md "Response" and "Errors"."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

OUTCOMES = ("approved", "cooling_off", "rejected", "review")

# API.md "Reason codes (fixed)".
REASON_CODES = (
    "REAL_NAME_NOT_VERIFIED", "REAL_NAME_TOO_RECENT", "AGE_OUT_OF_RANGE", "PAY_SCORE_TOO_LOW",
    "CARD_NOT_BOUND", "BUREAU_NOT_AUTHORIZED", "BUREAU_ADVERSE_RECORD", "LOW_ACTIVITY",
    "IDENTITY_DOCS_INCOMPLETE", "PARTNER_REQUIREMENTS_UNMET", "NOT_WHITELISTED",
    "HEALTH_SCORE_TOO_LOW", "RISK_EDUCATION_REQUIRED", "TOO_MANY_APPLICATIONS",
    "ID_CARD_EXPIRING", "DEVICE_SWITCHING", "CREDIT_UTILIZATION_HIGH", "DEBT_TOO_HIGH",
    "REAPPLY_COOLDOWN", "COOLING_OFF_PENDING", "SPECIAL_GROUP_DOCS_MISSING",
    "AMOUNT_OUT_OF_RANGE", "MISSING_DATA",
)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ReasonSchema(_Strict):
    code = fields.String(required=True, validate=validate.OneOf(REASON_CODES))
    rule_id = fields.String(required=True)
    message_zh = fields.String(required=True)
    message_en = fields.String(required=True)
    advice_zh = fields.String(required=True)
    advice_en = fields.String(required=True)
    inputs = fields.Dict(required=True)


class OfferSchema(_Strict):
    limit = fields.Float(required=True)
    daily_rate = fields.Float(required=True)
    monthly_rate = fields.Float(required=True)
    apr = fields.Float(required=True, validate=validate.Range(min=0, max=0.24))
    term_days_min = fields.Integer(required=True)
    term_days_max = fields.Integer(required=True)
    interest_free_days = fields.Integer(required=True)


class TraceEntrySchema(_Strict):
    rule_id = fields.String(required=True)
    check = fields.String(required=True)
    passed = fields.Boolean(required=True, allow_none=True)
    matched = fields.Boolean(required=True)
    inputs = fields.Dict(required=True)


class RecourseChangeSchema(_Strict):
    field = fields.String(required=True)
    to = fields.Raw(required=True)


class RecourseOptionSchema(_Strict):
    changes = fields.List(fields.Nested(RecourseChangeSchema), required=True)
    wait_until = fields.String(required=True, allow_none=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["approved", "cooling_off"]))


class RecourseSchema(_Strict):
    """API.md "Recourse": verified options, and the reasons no actionable change lifts."""

    options = fields.List(fields.Nested(RecourseOptionSchema), required=True)
    unreachable = fields.List(fields.String(validate=validate.OneOf(REASON_CODES)), required=True)


class DecisionSchema(_Strict):
    decision_id = fields.String(required=True)
    application_id = fields.String(required=True)
    user_id = fields.String(required=True)
    product = fields.String(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    offer = fields.Nested(OfferSchema, required=True, allow_none=True)
    funds_available_at = fields.String(required=True, allow_none=True)
    cancel_until = fields.String(required=True, allow_none=True)
    reapply_after = fields.String(required=True, allow_none=True)
    flags = fields.List(fields.String(), required=True)
    rules_version = fields.String(required=True, validate=validate.Regexp(r"^sha256:[0-9a-f]{64}$"))
    # only while a challenger runs: which arm decided (rules_version says with which rules)
    arm = fields.String(validate=validate.OneOf(["champion", "challenger"]))
    decided_at = fields.String(required=True)
    trace = fields.List(fields.Nested(TraceEntrySchema), required=True)
    # recourse: present (null for an offer) when the rules version declares recourse
    recourse = fields.Nested(RecourseSchema, allow_none=True)


class ErrorBodySchema(_Strict):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields = fields.Dict(required=True)


class ErrorSchema(_Strict):
    error = fields.Nested(ErrorBodySchema, required=True)


class ReviewNoteSchema(_Strict):
    reviewer_id = fields.String(required=True)
    at = fields.String(required=True)
    text = fields.String(required=True)


class ReviewSchema(_Strict):
    """A review case on the desk: its notes and claim, and once a reviewer closed it, the
    outcome and its effects at review time (the fields that are not always there)."""

    notes = fields.List(fields.Nested(ReviewNoteSchema), required=True)
    claimed_by = fields.String(required=True, allow_none=True)
    claimed_until = fields.String(required=True, allow_none=True)
    reviewer_id = fields.String()
    outcome = fields.String(validate=validate.OneOf(["approved", "rejected"]))
    reason_codes = fields.List(fields.String())
    note = fields.String()
    reviewed_at = fields.String()
    rules_version = fields.String()
    offer = fields.Nested(OfferSchema, allow_none=True)
    funds_available_at = fields.String(allow_none=True)
    cancel_until = fields.String(allow_none=True)
    reapply_after = fields.String(allow_none=True)


class HumanReviewEntrySchema(_Strict):
    requested_by = fields.String(required=True, validate=validate.OneOf(["applicant"]))
    requested_at = fields.String(required=True)
    statement = fields.String(required=True, allow_none=True)
    rules_version = fields.String(required=True)


class ApplicationViewSchema(_Strict):
    application_id = fields.String(required=True)
    user_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(
        ["approved", "rejected", "review", "review_requested", "cooling_off", "released",
         "cancelled"]))
    cancelled_at = fields.String(required=True, allow_none=True)
    decision = fields.Nested(DecisionSchema, required=True)
    # the applicant asked for a person instead of the rules
    human_review = fields.Nested(HumanReviewEntrySchema)
    # a review case: its notes and claim; once reviewed, the outcome and its effects
    review = fields.Nested(ReviewSchema)
    offer = fields.Nested(OfferSchema, allow_none=True)
    funds_available_at = fields.String(allow_none=True)
    cancel_until = fields.String(allow_none=True)
    reapply_after = fields.String(allow_none=True)
    # a review case's request, shown to a reviewer key only (what the reviewer decides on)
    request = fields.Dict()


class ExplainedReasonSchema(_Strict):
    """One reason in the applicant's words: the rules' message and advice in one language, the
    applicant's own values the reason read, and what the rule asked for."""

    code = fields.String(required=True, validate=validate.OneOf(REASON_CODES))
    rule_id = fields.String(required=True, allow_none=True)
    text = fields.String(required=True, allow_none=True)
    advice = fields.String(required=True, allow_none=True)
    your_value = fields.Dict(required=True)
    asked = fields.Dict(required=True, data_key="required")


class HumanReviewStandingSchema(_Strict):
    available = fields.Boolean(required=True)
    until = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, allow_none=True, validate=validate.OneOf(["requested", "decided"]))


class ExplanationSchema(_Strict):
    """GET /applications/<id>/explanation (API.md "Applicant rights"): no trace, no user state."""

    application_id = fields.String(required=True)
    user_id = fields.String(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    decided_at = fields.String(required=True)
    decided_by = fields.String(required=True, validate=validate.OneOf(["rules", "reviewer"]))
    summary = fields.String(required=True, allow_none=True)
    reasons = fields.List(fields.Nested(ExplainedReasonSchema), required=True)
    data_used = fields.List(fields.String(), required=True)
    recourse = fields.Nested(RecourseSchema, required=True, allow_none=True)
    human_review = fields.Nested(HumanReviewStandingSchema, required=True)
    rules_version = fields.String(required=True, validate=validate.Regexp(r"^sha256:[0-9a-f]{64}$"))


class ReviewItemSchema(_Strict):
    application_id = fields.String(required=True)
    user_id = fields.String(required=True)
    product = fields.String(required=True)
    amount = fields.Float(required=True, allow_none=True)
    reason_codes = fields.List(fields.String(), required=True)
    decided_at = fields.String(required=True)
    # who opened the case: the rules (outcome review) or the applicant (a rejection refused)
    requested_by = fields.String(required=True, validate=validate.OneOf(["rules", "applicant"]))
    age_seconds = fields.Integer(required=True)
    overdue = fields.Boolean(required=True)
    claimed_by = fields.String(required=True, allow_none=True)
    claimed_until = fields.String(required=True, allow_none=True)


class ReviewPageSchema(_Strict):
    items = fields.List(fields.Nested(ReviewItemSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ReasonCodeSchema(_Strict):
    code = fields.String(required=True, validate=validate.OneOf(REASON_CODES))
    starts_cooldown = fields.Boolean(required=True)


class ReasonCodesSchema(_Strict):
    reason_codes = fields.List(fields.Nested(ReasonCodeSchema), required=True)


class ExportSchema(_Strict):
    user_id = fields.String(required=True)
    exported_at = fields.String(required=True)
    receipt_id = fields.String(required=True)
    state = fields.Dict(required=True, allow_none=True)
    applications = fields.List(fields.Dict(), required=True)
    log = fields.List(fields.Dict(), required=True)


class ErasureResultSchema(_Strict):
    erased = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    receipt_id = fields.String(required=True)


class ErasureReceiptSchema(_Strict):
    receipt_id = fields.String(required=True)
    erased_at = fields.String(required=True)
    operator_id = fields.String(required=True)
    reason = fields.String(required=True)
    erased = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    window_kept = fields.Boolean(required=True)


class CoolingOffSchema(_Strict):
    application_id = fields.String(required=True)
    funds_available_at = fields.String(required=True)


class TemporaryLimitSchema(_Strict):
    active = fields.Boolean(required=True)
    expires_at = fields.String(required=True, allow_none=True)
    grants_used = fields.Integer(required=True)
    grants_left = fields.Integer(required=True)


class GraceSchema(_Strict):
    uses_in_period = fields.Integer(required=True)
    uses_left = fields.Integer(required=True)
    uses = fields.List(fields.String(), required=True)


class UserStateSchema(_Strict):
    user_id = fields.String(required=True)
    as_of = fields.String(required=True)
    applications_6m = fields.Integer(required=True)
    reapply_after = fields.String(required=True, allow_none=True)
    cooling_off = fields.Nested(CoolingOffSchema, required=True, allow_none=True)
    temporary_limit = fields.Nested(TemporaryLimitSchema, required=True)
    grace = fields.Nested(GraceSchema, required=True)


class ReloadSampleSchema(_Strict):
    total = fields.Integer(required=True)
    changed = fields.Integer(required=True)
    transitions = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    rules = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class KitResultSchema(_Strict):
    """A rules version's policy test kit result (rules/tests)."""
    cases = fields.Integer(required=True)
    passed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    ok = fields.Boolean(required=True)
    failures = fields.List(fields.String(), required=True)


class ReloadResultSchema(_Strict):
    rules_version = fields.String(required=True)
    previous_version = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    changed_version = fields.Boolean(required=True)
    sample = fields.Nested(ReloadSampleSchema, required=True)
    kit = fields.Nested(KitResultSchema)


class HealthSchema(_Strict):
    status = fields.String(required=True)
    rules_version = fields.String()
