"""A decision explained to its applicant in plain words (PIPL art. 24), as pure policy.

Everything comes from what the application's record already holds, read against the rule book
of the version that made the decision: no rule is evaluated again, so the explanation says
what was decided, not what the rules would say today. The words are the rules' too: each
reason's message and advice as the decision recorded them, and the summary from
explanations.yaml. A rules version without that file explains with no summary; the rest of
the explanation does not need it.

What a reason shows is its inputs split by the fact catalogue (service.domain.facts): a fact
the request gave is the applicant's own value (`your_value`); a fact of the user's state (the
service's own count of applications, T4's limit factor) is internal and left out; anything
else is what the rule asked for (`required`): its parameters, the largest amount it allows,
the end of the window a refusal by state waits for. `data_used` is every request field a rule
read when it was evaluated. A document not claimed and an empty list of groups are not in it:
they are the absence of a claim, which the canonical request (schemas.request) leaves out too.

Once a person decided (the record has a `review`), the explanation is the reviewer's: its
outcome, its time, and its reason codes in the rules' words.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from service.domain.applicant_fields import DOCUMENTS, GROUPS
from service.domain.application import StoredApplication
from service.domain.facts import FACT_FIELDS
from service.domain.human_review import standing
from service.domain.rulebook import RuleBook
from service.domain.userstate import UserState

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
GROUPS_PATH = "applicant.groups"

_STATE_FACTS = frozenset(UserState().fact_fields())
_GROUP_FACTS = frozenset(f"is_{group}" for group in GROUPS)


@dataclass(frozen=True)
class Ruling:
    """Who made the decision the applicant lives with, and what it says."""

    decided_by: str              # "rules" | "reviewer"
    outcome: str
    decided_at: str
    reasons: tuple[Mapping[str, Any], ...]   # reasons as a decision records them
    offer: Optional[Mapping[str, Any]]


@dataclass(frozen=True)
class ExplainedReason:
    code: str
    rule_id: Optional[str]
    text: Optional[str]
    advice: Optional[str]
    your_value: dict[str, Any]
    required: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "rule_id": self.rule_id, "text": self.text,
                "advice": self.advice, "your_value": self.your_value, "required": self.required}


def explain(record: StoredApplication, book: RuleBook, lang: str, now: dt.datetime) -> dict:
    """GET /applications/<id>/explanation: the record's decision, in `lang`, at `now`.
    `book` is the rule book of the decision's rules version."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}")
    decision = record.decision
    ruling = ruling_of(record, book)
    return {
        "application_id": record.application_id,
        "user_id": record.user_id,
        "outcome": ruling.outcome,
        "decided_at": ruling.decided_at,
        "decided_by": ruling.decided_by,
        "summary": summary(book, ruling, decision["product"], lang),
        "reasons": [explained_reason(reason, lang).to_dict() for reason in ruling.reasons],
        "data_used": data_used(decision.get("trace", ())),
        "recourse": decision.get("recourse"),
        "human_review": standing(record, book, now).to_dict(),
        "rules_version": decision["rules_version"],
    }


def ruling_of(record: StoredApplication, book: RuleBook) -> Ruling:
    """The rules' decision, or the reviewer's once there is one."""
    decision, review = record.decision, record.doc.get("review")
    if not review:
        return Ruling("rules", decision["outcome"], decision["decided_at"],
                      tuple(decision["reasons"]), decision.get("offer"))
    recorded = {reason["code"]: reason for reason in reversed(decision["reasons"])}
    reasons = tuple(recorded.get(code) or reason_in_book(book, code)
                    for code in review.get("reason_codes", ()))
    return Ruling("reviewer", review["outcome"], review["reviewed_at"], reasons, review.get("offer"))


def reason_in_book(book: RuleBook, code: str) -> dict[str, Any]:
    """A reason code a reviewer gave that the decision did not, in the rules' words: the first
    rule giving it (then the missing-data template, then the refusals by state). It read
    nothing of this application, so it has no inputs."""
    specs = [(rule.rule_id, rule.reason) for rule in (*book.rules, book.missing_data)
             if rule.reason is not None]
    specs += list(book.time.state_reasons.values())
    for rule_id, spec in specs:
        if spec.code == code:
            return {"code": code, "rule_id": rule_id, "message_zh": spec.message_zh,
                    "message_en": spec.message_en, "advice_zh": spec.advice_zh,
                    "advice_en": spec.advice_en, "inputs": {}}
    return {"code": code, "rule_id": None, "inputs": {}}   # a code this version does not word


def explained_reason(reason: Mapping[str, Any], lang: str) -> ExplainedReason:
    yours, required = split_inputs(reason.get("inputs") or {})
    return ExplainedReason(reason["code"], reason.get("rule_id"), reason.get(f"message_{lang}"),
                           reason.get(f"advice_{lang}"), yours, required)


def split_inputs(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the applicant's own values, what the rule asked for) of a reason's inputs; the user's
    state is in neither."""
    yours: dict[str, Any] = {}
    required: dict[str, Any] = {}
    for name, value in inputs.items():
        if name not in FACT_FIELDS:
            required[name] = value
        elif name not in _STATE_FACTS:
            yours[name] = value
    return yours, required


def request_path(name: str, value: Any) -> Optional[str]:
    """The request field a rule's input was read from, when the request gave it (None: a
    parameter, the user's state, a field absent or null, or a claim not made)."""
    fact = FACT_FIELDS.get(name)
    if fact is None or value is None or name in _STATE_FACTS:
        return None
    if name in _GROUP_FACTS:
        return GROUPS_PATH if value is True else None
    if name in DOCUMENTS and value is False:
        return None
    return fact.source


def data_used(trace: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every request field the evaluated rules read, sorted, each once (a rule not evaluated,
    `passed` null, read nothing)."""
    return sorted({path for entry in trace if entry.get("passed") is not None
                   for name, value in entry.get("inputs", {}).items()
                   if (path := request_path(name, value)) is not None})


def summary(book: RuleBook, ruling: Ruling, product: str, lang: str) -> Optional[str]:
    """The summary of explanations.yaml filled in (None without the file, or a template)."""
    texts = book.explanations
    template = texts.summary(ruling.decided_by, ruling.outcome, lang) if texts else None
    if template is None:
        return None
    limit = (ruling.offer or {}).get("limit")
    return template.format(product=product_name(book, product, lang), count=len(ruling.reasons),
                           limit=amount_text(limit) if limit is not None else "")


def product_name(book: RuleBook, product: str, lang: str) -> str:
    """The product as the applicant knows it: explanations.yaml's name in `lang`, products.yaml's
    name_zh in Chinese, else its id."""
    named = book.explanations.product_names.get(lang, {}) if book.explanations else {}
    if product in named:
        return named[product]
    if lang == "zh" and product in book.products:
        return book.products[product].name_zh
    return product


def amount_text(value: float) -> str:
    """An amount in CNY as a person reads it: 30,000 or 1,234.50."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"
