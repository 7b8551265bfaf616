"""The applicant's fields as the rules read them: their kinds, the groups and the documents.

The fact catalogue (service.domain.facts) is built from these. schemas/request.py validates a
request's fields with the same names and kinds; the schemas import nothing of the service and
the domain no schema, so each holds its list and tests/unit/test_facts.py checks they agree.
"""
from __future__ import annotations

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
