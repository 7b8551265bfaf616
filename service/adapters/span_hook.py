"""The tracing hook an adapter may be given: a span around each outside call it makes.

The adapters that talk to something slow or opaque (Redis's round trips, durable_rules'
evaluation) take an optional SpanHook from bootstrap, which builds one only when OpenTelemetry
is installed and asked for (service.adapters.otel_tracing). Without one they call straight
through: one `is None` test per call, and nothing of any tracing library imported. The domain
and the use cases know nothing of it.
"""
from __future__ import annotations

from typing import ContextManager, Literal, Mapping, Protocol, Union

AttributeValue = Union[str, int, float, bool]
SpanKind = Literal["internal", "client"]


class SpanHook(Protocol):
    def span(self, name: str, attributes: Mapping[str, AttributeValue],
             kind: SpanKind = "internal") -> ContextManager[object]:
        """A span named `name`, a child of the current one, open while the block runs; an
        exception leaving the block marks it failed."""
        ...
