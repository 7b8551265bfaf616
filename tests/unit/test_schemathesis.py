"""schemathesis against the live app's own OpenAPI document: no 5xx, responses as documented.

Fixed seed (derandomized) and a bounded number of examples in CI; bench/fuzz.sh runs more.
"""
import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from tests.conftest import NOW

KEY = "schemathesis-client-key"


def _app():
    from service.adapters import rules_files
    from service.adapters.rule_engine import policy_for
    from service.entrypoints.settings import Settings
    from tests.conftest import RULES_DIR, memory_services

    keyed = Settings(**{**Settings().__dict__, "api_keys": (KEY,), "admin_keys": ("admin-" + KEY,)})
    return create_app(keyed, services=memory_services(policy_for(rules_files.load(RULES_DIR)), FixedClock(NOW)))


schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


@schema.auth()
class ClientKey:
    """The client key, the way schemathesis applies credentials (so it does not count the
    header as a mutation of the request)."""

    def get(self, case, context):
        return KEY

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "X-API-Key": data}


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    # negative_data_rejection is left out: it flagged bodies that validate against the
    # document itself (checked with jsonschema), a false positive of its mutation tracking.
    case.call_and_validate(excluded_checks=[negative_data_rejection])
