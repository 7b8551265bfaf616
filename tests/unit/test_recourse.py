"""Issue 13: every recourse option, applied by a client and sent again, gives its outcome.

The table sends refusals across the seven products through HTTP (Flask app on the in-memory stores, an
injected clock); each option is then applied to the request and sent again at its
`wait_until`: by the same user after the refusal (the state the option promises) and by a
fresh user. The property test draws applicants and checks that no option lies and that
`unreachable` is exactly the reasons no combination of actionable changes lifts.
"""
from __future__ import annotations

import copy
import datetime as dt
import io
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.request import DecideRequestSchema
from service.adapters import decision_log, rules_files
from service.entrypoints.bootstrap import policy_source
from service.entrypoints.settings import Settings
from service.adapters.rule_engine import policy_for
from service.domain import rulebook
from service.domain.clock import FixedClock
from service.domain.decision import parse_iso_utc
from service.domain.recourse import ACCEPTED, apply_changes, state_after
from service.domain.userstate import UserState
from service.entrypoints.http.app import create_app
from service.usecases import replay
from tests.conftest import NOW, RULES_DIR, memory_services, payload

OLD_RULES = Path(__file__).resolve().parents[1] / "data" / "rules_before_issue17"


class Env:
    """A fresh store and clock behind the HTTP app."""

    def __init__(self, policy):
        self.clock = FixedClock(NOW)
        self.client = create_app(Settings(), services=memory_services(policy, self.clock)).test_client()
        self.n = 0

    def send(self, doc: dict, user: str) -> dict:
        self.n += 1
        response = self.client.post("/decide", json=dict(doc, user_id=user, application_id=f"app-{self.n}"))
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def applied(doc: dict, option: dict) -> dict:
    return apply_changes(doc, ((c["field"], c["to"]) for c in option["changes"]))


def codes(decision: dict) -> list[str]:
    return [r["code"] for r in decision["reasons"]]


# product, request, reason codes, (fields changed, waits?) of the first option
TABLE = [
    ("weilidai", payload(amount=300000), ["AMOUNT_OUT_OF_RANGE"], ({"amount"}, False)),
    ("weilidai", payload(bank_card_bound=False, risk_education_done=False),
     ["CARD_NOT_BOUND", "RISK_EDUCATION_REQUIRED"],
     ({"applicant.bank_card_bound", "applicant.risk_education_done"}, False)),
    ("weilidai", payload(real_name_verified_at="2026-06-01"), ["REAL_NAME_TOO_RECENT"], (set(), True)),
    ("weilidai", payload(real_name_verified_at=None), ["REAL_NAME_NOT_VERIFIED"],
     ({"applicant.real_name_verified_at"}, True)),
    ("weilidai", payload(credit_card_bound=False, amount=250000), ["CARD_NOT_BOUND", "AMOUNT_OUT_OF_RANGE"],
     ({"applicant.credit_card_bound", "amount"}, False)),
    ("we2000", payload("we2000", amount=4000), ["AMOUNT_OUT_OF_RANGE"], ({"amount"}, False)),
    ("we2000", payload("we2000", id_card_uploaded=False), ["IDENTITY_DOCS_INCOMPLETE"],
     ({"applicant.id_card_uploaded"}, False)),
    ("partner", payload("partner", carrier_verified=False, contacts_authorized=False),
     ["PARTNER_REQUIREMENTS_UNMET"], ({"applicant.carrier_verified", "applicant.contacts_authorized"}, True)),
    ("partner", payload("partner", amount=600), ["AMOUNT_OUT_OF_RANGE"], ({"amount"}, False)),
    ("xiaoe", payload("xiaoe", amount=8000, groups=["student"]),
     ["SPECIAL_GROUP_DOCS_MISSING", "AMOUNT_OUT_OF_RANGE"],
     ({"amount", "applicant.documents.chsi_verified", "applicant.documents.guardian_confirmed"}, False)),
    ("zhouzhuanjin", payload("zhouzhuanjin", amount=600000, documents={"cash_flow_verified": False}),
     ["AMOUNT_OUT_OF_RANGE", "SPECIAL_GROUP_DOCS_MISSING"],
     ({"amount", "applicant.documents.cash_flow_verified"}, False)),
    ("education", payload("education", amount=5000, face_verified=False),
     ["IDENTITY_DOCS_INCOMPLETE", "AMOUNT_OUT_OF_RANGE"], ({"amount", "applicant.face_verified"}, False)),
    ("emergency", payload("emergency", amount=8000, bureau_authorized=False),
     ["BUREAU_NOT_AUTHORIZED", "AMOUNT_OUT_OF_RANGE"], ({"amount", "applicant.bureau_authorized"}, False)),
    ("emergency", payload("emergency", documents={"repayment_proof": None}, amount=6000,
                          groups=["overseas"]),
     ["SPECIAL_GROUP_DOCS_MISSING", "AMOUNT_OUT_OF_RANGE"], None),
]


@pytest.mark.parametrize("product, doc, reasons, first", TABLE, ids=[f"{t[0]}-{i}" for i, t in enumerate(TABLE)])
def test_every_option_gives_its_outcome_when_sent_again(policy, product, doc, reasons, first):
    refused = Env(policy).send(doc, "u-a")
    assert refused["outcome"] in ("rejected", "review") and sorted(set(codes(refused))) == sorted(set(reasons))
    recourse = refused["recourse"]
    assert recourse["options"] and recourse["unreachable"] == []
    if first is not None:
        fields, waits = first
        assert {c["field"] for c in recourse["options"][0]["changes"]} == fields
        assert (recourse["options"][0]["wait_until"] is not None) == waits
    for option in recourse["options"]:
        env = Env(policy)
        assert env.send(doc, "u-a")["recourse"] == recourse       # the same refusal, replayed
        if option["wait_until"]:
            env.clock.set(parse_iso_utc(option["wait_until"]))
        again = env.send(applied(doc, option), "u-a")              # the same user, after the refusal
        assert again["outcome"] == option["outcome"], (option, again["reasons"])
        assert again["recourse"] is None
        fresh = env.send(applied(doc, option), "u-fresh")          # a fresh user
        assert fresh["outcome"] == option["outcome"], (option, fresh["reasons"])


def test_amount_option_is_the_largest_amount_that_passes(policy):
    refused = Env(policy).send(payload(amount=300000), "u-a")
    (option,) = [o for o in refused["recourse"]["options"] if o["changes"][0]["field"] == "amount"]
    best = option["changes"][0]["to"]
    env = Env(policy)
    assert env.send(payload(amount=best), "u-b")["outcome"] == "approved"
    assert env.send(payload(amount=best + 1), "u-c")["outcome"] == "rejected"


def test_refusal_opening_the_window_waits_until_its_end(policy):
    env = Env(policy)
    refused = env.send(payload("partner", carrier_verified=False, contacts_authorized=False), "u-a")
    (option,) = refused["recourse"]["options"]
    assert option["wait_until"] == refused["reapply_after"]
    changed = applied(payload("partner", carrier_verified=False, contacts_authorized=False), option)
    assert codes(env.send(changed, "u-a")) == ["REAPPLY_COOLDOWN"]      # not before its time
    env.clock.set(parse_iso_utc(option["wait_until"]))
    assert env.send(changed, "u-a")["outcome"] == "approved"


@pytest.mark.parametrize("first, code", [
    (payload(bureau_major_adverse=True), "REAPPLY_COOLDOWN"),
    (payload(monthly_income=4000, amount=4000), "COOLING_OFF_PENDING"),
])
def test_state_refusals_wait_until_the_window_ends(policy, first, code):
    env = Env(policy)
    assert env.send(first, "u-a")["outcome"] in ("rejected", "cooling_off")
    refused = env.send(payload(), "u-a")
    assert codes(refused) == [code]
    (option,) = refused["recourse"]["options"]
    assert option == {"changes": [], "wait_until": refused["reapply_after"], "outcome": "approved"}
    env.clock.set(parse_iso_utc(option["wait_until"]))
    assert env.send(payload(), "u-a")["outcome"] == "approved"


@pytest.mark.parametrize("doc, unreachable", [
    (payload(age=17), ["AGE_OUT_OF_RANGE"]),
    (payload(pay_score=500, bank_card_bound=False), ["PAY_SCORE_TOO_LOW"]),
    (payload(id_card_expiry="2026-12-01"), ["ID_CARD_EXPIRING"]),
    (payload(drop=("pay_score",)), ["MISSING_DATA"]),
    (payload(age=17, real_name_verified_at="2026-06-01"), ["AGE_OUT_OF_RANGE"]),
])
def test_unreachable_lists_what_no_change_lifts(policy, doc, unreachable):
    refused = Env(policy).send(doc, "u-a")
    assert refused["recourse"] == {"options": [], "unreachable": unreachable}


def test_offers_carry_null_recourse(policy):
    env = Env(policy)
    assert env.send(payload(), "u-a")["recourse"] is None
    cooling = env.send(payload(monthly_income=4000, amount=4000), "u-b")
    assert cooling["outcome"] == "cooling_off" and cooling["recourse"] is None


def test_rules_without_recourse_file_give_no_recourse_key():
    book = rules_files.load(OLD_RULES)
    assert book.recourse is None
    env = Env(policy_for(book))
    assert "recourse" not in env.send(payload(age=17), "u-a")
    assert "recourse" not in env.send(payload(), "u-b")


def test_openapi_documents_recourse(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "recourse" in schemas["Decision"]["properties"]
    assert {"options", "unreachable"} <= set(schemas["Recourse"]["properties"])


# -- the rules file ----------------------------------------------------------------------------
def _files(recourse_text: str) -> dict:
    files = {p.name: p.read_bytes() for p in RULES_DIR.glob("*.yaml")}
    files["recourse.yaml"] = recourse_text.encode()
    return files


SEARCH = "search: {max_evaluations: 10, max_fields: 2, max_options: 2}\n"


@pytest.mark.parametrize("actionable, problem", [
    ("[{field: applicant.age, action: set, to: true}]", "does not fit field 'applicant.age'"),
    ("[{field: applicant.bank_card_bound, action: set}]", "'to' goes with action 'set'"),
    ("[{field: applicant.nickname, action: set, to: true}]", "actionable.0.field"),
    ("[{field: amount, action: wait}]", "does not fit field 'amount'"),
    ("[{field: amount, action: amount}, {field: amount, action: amount}]", "declared twice"),
])
def test_a_bad_recourse_file_is_refused_naming_the_problem(actionable, problem):
    with pytest.raises(rulebook.RulesError, match="recourse.yaml") as error:
        rules_files.load_files(_files(SEARCH + f"actionable: {actionable}\n"))
    assert problem in str(error.value)


def test_the_search_cap_bounds_the_evaluations(book):
    files = _files(SEARCH.replace("10", "1") + "actionable: [{field: amount, action: amount}]\n")
    capped = policy_for(rules_files.load_files(files))
    calls = []
    plain, verdict = capped.evaluate_plain, capped.verdict
    capped.evaluate_plain = lambda *args: calls.append("decision") or plain(*args)
    capped.verdict = lambda *args: calls.append("candidate") or verdict(*args)
    request = DecideRequestSchema(term_ranges=book.term_ranges()).load(payload(amount=300000))
    recourse = capped.evaluate(request, UserState(), NOW).decision.recourse
    assert calls == ["decision", "candidate"]    # the decision, and the one candidate allowed
    # cut short, the search claims nothing: no option, and no reason called unreachable
    assert recourse.options == () and recourse.unreachable == ()


# -- property: no option lies; unreachable is exact --------------------------------------------
SUPPLIES = ["bank_card_bound", "credit_card_bound", "bureau_authorized", "face_verified",
            "id_card_uploaded", "carrier_verified", "contacts_authorized", "risk_education_done"]
DOCS = ["chsi_verified", "guardian_confirmed", "passport_verified", "domestic_guarantor",
        "business_license", "cash_flow_verified", "work_badge_verified", "repayment_proof"]


@st.composite
def refusals(draw):
    product = draw(st.sampled_from(["weilidai", "we2000", "partner", "xiaoe", "zhouzhuanjin",
                                    "education", "emergency"]))
    doc = payload(product)
    applicant = doc["applicant"]
    applicant["documents"] = {name: True for name in DOCS}
    for name in draw(st.lists(st.sampled_from(SUPPLIES), max_size=2, unique=True)):
        applicant[name] = False
    for name in draw(st.lists(st.sampled_from(DOCS), max_size=2, unique=True)):
        applicant["documents"][name] = False
    applicant["groups"] = draw(st.lists(st.sampled_from(["student", "overseas", "sme_owner",
                                                         "blue_collar"]), max_size=1))
    applicant["age"] = draw(st.sampled_from([17, 30, 30, 30, 58]))
    applicant["pay_score"] = draw(st.sampled_from([500, 580, 680]))
    applicant["real_name_verified_at"] = draw(st.sampled_from(["2024-01-15", "2026-06-01", None]))
    applicant["monthly_income"] = draw(st.sampled_from([4000, 1_000_000]))
    doc["amount"] = draw(st.sampled_from([300, 1500, 2500, 4000, 7000, 40000, 60000, 300000, 600000]))
    return doc


def _changes(doc: dict) -> list[list[tuple[str, object]]]:
    """Every combination of actionable supplies that differ, with each interesting amount."""
    applicant = doc["applicant"]
    flips = [(f"applicant.{n}", True) for n in SUPPLIES if applicant.get(n) is not True]
    flips += [(f"applicant.documents.{d}", True) for d in DOCS if applicant["documents"].get(d) is not True]
    if applicant.get("real_name_verified_at") is None:
        flips.append(("applicant.real_name_verified_at", NOW.date()))
    amounts = [None, 500, 1000, 2000, 3000, 5000, 7500, 10000, 30000, 45000, 50000, 100000, 200000, 500000]
    out = []
    for size in range(len(flips) + 1):
        for subset in itertools.combinations(flips, size):
            out += [list(subset) + ([("amount", a)] if a else []) for a in amounts]
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(refusals())
def test_no_option_lies_and_unreachable_is_exact(policy, book, doc):
    request = DecideRequestSchema(term_ranges=book.term_ranges()).load(
        dict(doc, user_id="u-p", application_id="app-p"))
    outcome = policy.evaluate(request, UserState(), NOW)
    recourse = outcome.decision.recourse
    if outcome.decision.outcome in ACCEPTED:
        assert recourse is None
        return
    after = state_after(UserState(), outcome.change)
    for option in recourse.options:
        at = parse_iso_utc(option.wait_until) if option.wait_until else NOW
        changed = apply_changes(request, ((c.field, c.to) for c in option.changes))
        changed = DecideRequestSchema(term_ranges=book.term_ranges()).load(
            _jsonable(changed))
        assert policy.evaluate_plain(changed, after, at).decision.outcome == option.outcome
    start = parse_iso_utc(outcome.decision.reapply_after) if outcome.decision.starts_cooldown else NOW
    codes_now = {r.code for r in outcome.decision.reasons}
    liftable = set()
    for changes in _changes(request):
        if codes_now <= liftable:
            break
        for at in (start, start + dt.timedelta(days=400)):
            changed = apply_changes(request, changes)
            liftable |= codes_now - {r.code for r in policy.evaluate_plain(changed, after, at).decision.reasons}
    assert set(recourse.unreachable) == codes_now - liftable
    event(f"options={bool(recourse.options)} unreachable={bool(recourse.unreachable)}")


def _jsonable(request: dict) -> dict:
    out = copy.deepcopy(request)
    for key, value in out["applicant"].items():
        if isinstance(value, dt.date):
            out["applicant"][key] = value.isoformat()
    return out


def test_the_log_holds_the_recourse_and_replay_reproduces_it(policy):
    services = memory_services(policy, FixedClock(NOW))
    client = create_app(Settings(), services=services).test_client()
    docs = [payload(amount=300000), payload(age=17), payload(), payload(real_name_verified_at=None),
            payload("partner", carrier_verified=False, contacts_authorized=False), payload()]
    for n, doc in enumerate(docs):
        assert client.post("/decide", json=dict(doc, user_id="u-log", application_id=f"a-{n}")).status_code == 200
    out = io.StringIO()
    services.stores.log.export(out)
    lines = list(decision_log.read_lines(io.StringIO(out.getvalue())))
    logged = [json.loads(text)["decision"] for _, text in lines]
    assert all("recourse" in d for d in logged)
    assert any(d["recourse"] and d["recourse"]["options"] for d in logged)
    stored = client.get("/applications/a-0?user_id=u-log").get_json()["decision"]
    assert stored["recourse"] == logged[0]["recourse"]
    summary = replay.replay(iter(lines), policy_source(Settings(rules_dir=RULES_DIR)))
    assert summary.total == len(docs) and summary.exact == summary.total


# -- the verdict the search reads is the decision's own conclusion (issue 15) --------------------
def test_the_verdict_concludes_what_the_full_decision_concludes(book, policy):
    """The search evaluates candidates as verdicts (no trace, no largest-allowed probe): each
    must give the outcome, codes, refusing checks and missing fields the full decision gives."""
    from tests.unit.test_engine_soak import varied_requests

    states = [UserState(), UserState(applications_6m=5), UserState(temp_limit_grants=1),
              UserState(cooldown_until=NOW + dt.timedelta(days=3)),
              UserState(temp_limit_expires_at=NOW + dt.timedelta(days=2))]
    refused = set()
    for request in varied_requests(book, 35):
        for amount in (500, 4000, 30000, 300000):
            changed = dict(request, amount=amount)
            for state in states:
                decision = policy.evaluate_plain(changed, state, NOW).decision
                verdict = policy.verdict(changed, state, NOW)
                fired = {f"{t['rule_id']}.{t['check']}" for t in decision.trace if t["matched"]}
                assert verdict.outcome == decision.outcome
                assert verdict.codes == {r.code for r in decision.reasons}
                assert [r.key for r in verdict.fired_checks] == [
                    c.rule.key for c in policy.engine.plans[request["product"]].rules
                    if c.rule.is_check and c.rule.key in fired]
                assert list(verdict.missing) == [r.inputs["field"] for r in decision.reasons
                                                 if r.code == "MISSING_DATA"]
                refused |= verdict.codes
    assert {"MISSING_DATA", "REAPPLY_COOLDOWN", "AMOUNT_OUT_OF_RANGE"} <= refused
