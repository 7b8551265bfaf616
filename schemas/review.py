"""Request schemas of the audited actions: a review, an override, an erasure (API.md "Additions").

The fixed reason codes come from the loaded rules (`codes`), as the term ranges do for the
decide request: this package imports nothing of the service.
"""
from __future__ import annotations

from typing import Iterable

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from schemas.request import _id_field

NOTE_MAX = 2000


def _text(max_length: int, required: bool = True) -> fields.String:
    return fields.String(required=required, validate=validate.Length(min=1, max=max_length))


class ReviewRequestSchema(Schema):
    """POST /applications/<id>/review."""

    class Meta:
        unknown = RAISE

    user_id = _id_field()
    reviewer_id = _id_field()
    outcome = fields.String(required=True, validate=validate.OneOf(("approved", "rejected")))
    reason_codes = fields.List(fields.String(), load_default=list)
    note = fields.String(load_default="", validate=validate.Length(max=NOTE_MAX))

    def __init__(self, *args, codes: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.codes = frozenset(codes)

    @validates_schema
    def _codes(self, data, **kwargs):
        codes = data.get("reason_codes", [])
        unknown = sorted({c for c in codes if c not in self.codes})
        if unknown:
            raise ValidationError(f"Unknown reason code(s): {', '.join(unknown)}.", "reason_codes")
        if len(set(codes)) != len(codes):
            raise ValidationError("A reason code is given twice.", "reason_codes")
        if data.get("outcome") == "rejected" and not codes:
            raise ValidationError("Required and non-empty when rejecting.", "reason_codes")


class OverrideRequestSchema(Schema):
    """POST /users/<id>/overrides."""

    class Meta:
        unknown = RAISE

    action = fields.String(required=True, validate=validate.OneOf(("lift_cooldown",)))
    operator_id = _id_field()   # the identifier rules, as reviewer_id: no control characters
    reason = _text(NOTE_MAX)


class OperatorOverrideRequestSchema(OverrideRequestSchema):
    """POST /users/<id>/overrides with an operator's key (ADMIN_API_KEYS): the operator is the
    key's, so `operator_id` may be left out (given, it must be the key's: the route checks)."""

    operator_id = fields.String(validate=OverrideRequestSchema._declared_fields["operator_id"].validate,
                                load_default=None)


class HumanReviewRequestSchema(Schema):
    """POST /applications/<id>/human-review: the applicant refuses a decision the rules made."""

    class Meta:
        unknown = RAISE

    user_id = _id_field()
    statement = fields.String(load_default=None, allow_none=True,
                              validate=validate.Length(max=NOTE_MAX))


class ExportQuerySchema(Schema):
    """GET /users/<id>/export's query: who asks and why (the receipt holds both, masked)."""

    class Meta:
        unknown = RAISE

    operator_id = _id_field()
    reason = _text(NOTE_MAX)


class ErasureRequestSchema(Schema):
    """DELETE /users/<id>."""

    class Meta:
        unknown = RAISE

    operator_id = _id_field()   # the identifier rules, as reviewer_id: no control characters
    reason = _text(NOTE_MAX)


class ClaimRequestSchema(Schema):
    """POST and DELETE /reviews/<id>/claim: which case (its user) and which reviewer."""

    class Meta:
        unknown = RAISE

    user_id = _id_field()
    reviewer_id = _id_field()


class NoteRequestSchema(ClaimRequestSchema):
    """POST /reviews/<id>/notes: a note of 1-2,000 characters, kept as written."""

    text = _text(NOTE_MAX)
