"""What every route reads from a request: the JSON body (bounded, strict), ids from the path, the
decision service and the request schema of the live rules version."""
from __future__ import annotations

from flask import current_app, request

from schemas.request import DecideRequestSchema, id_problems
from service.entrypoints.gunicorn_worker import BODY_ERRORS, body_problem
from service.entrypoints.http import jsonbody
from service.entrypoints.http.errors import ApiError
from service.entrypoints.bootstrap import Services


def services() -> Services:
    return current_app.extensions["services"]


def json_body() -> dict:
    """The request body as a JSON object; every way it can be wrong is a 4xx (jsonbody)."""
    req = request._get_current_object()   # each use of the proxy looks the context up again
    if req.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        payload = jsonbody.parse(request_body(req.max_content_length))
    except jsonbody.BodyError as exc:
        raise ApiError(400, "malformed_json", exc.message, {exc.field: [exc.message]}) from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.",
                       {"_request": ["Must be a JSON object."]})
    return payload


def request_body(limit: int | None) -> bytes:
    """The body, at most `limit` bytes or a 413. werkzeug enforces the limit on Content-Length
    only: a chunked body (no length) was cut at the limit and the prefix decided.
    A chunked body the server cannot read (a bad chunk size, a missing CRLF) is the client's
    error: a 400 saying so, not the 500 of an unexpected exception."""
    req = request._get_current_object()
    if req.content_length is not None or limit is None:
        return req.get_data(cache=True)
    stream = req.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        try:
            chunk = stream.read(min(65536, limit + 1 - size))
        except BODY_ERRORS as exc:
            message = f"The chunked body could not be read: {body_problem(exc)}."
            raise ApiError(400, "bad_request", message, {"_request": [message]}) from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise ApiError(413, "request_entity_too_large",
                   f"The body is larger than {limit} bytes.")


def query_int(name: str, low: int, high: int, default: int) -> int:
    """An integer query parameter in [low, high], written in ASCII digits only, or a 400.

    `str.isdigit` and `int` accept other scripts' digits ("²", "١٢"): int("²") raises, and a
    value the client cannot have meant would be read; only 0-9 are a number here."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))
            and low <= int(raw) <= high):
        raise ApiError(400, "invalid_request", f"The {name} is invalid.",
                       {name: [f"Must be an integer between {low} and {high}."]})
    return int(raw)


def checked_id(name: str, value: str) -> str:
    """A user or application id from a path or query, held to the body's id rules."""
    problems = id_problems(value)
    if problems:
        raise ApiError(400, "invalid_request", f"The {name} is invalid.", {name: problems})
    return value


def decide_schema() -> DecideRequestSchema:
    """One schema per rules version (the term ranges come from the rules), built once."""
    extensions = current_app.extensions
    book = extensions["services"].rules.policy.book
    cache: dict[str, DecideRequestSchema] = extensions.setdefault("decide_schemas", {})
    if book.version not in cache:
        cache.clear()
        cache[book.version] = DecideRequestSchema(term_ranges=book.term_ranges())
    return cache[book.version]
