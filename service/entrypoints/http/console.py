"""The reviewer console (API.md "Reviewer console"): the static files of one page, no key.

The page holds no data until a reviewer types a key into it; every case it shows comes from the
reviewer endpoints, with that key, through the page's own script. So the files are open (roles.py
lets this blueprint through) and nothing else is: the route serves only the files that ship in
service/entrypoints/console/, by name, and an unknown name is the API's JSON 404.

Every answer carries `Content-Security-Policy: default-src 'self'`: the page may load nothing
from another origin, and no inline script or style runs (all of it is in the files).
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory
from werkzeug.exceptions import NotFound

bp = Blueprint("console", __name__)
FILES = Path(__file__).resolve().parents[1] / "console"
SHIPPED = frozenset(p.name for p in FILES.iterdir() if p.is_file() and not p.name.startswith("."))
HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


@bp.get("/console", strict_slashes=True)
def to_console() -> Response:
    return redirect("/console/", 308)


@bp.get("/console/")
def page() -> Response:
    return send_from_directory(FILES, "index.html")


@bp.get("/console/<name>")
def asset(name: str) -> Response:
    if name not in SHIPPED:
        raise NotFound(f"No console file {name!r}.")
    return send_from_directory(FILES, name)


@bp.after_request
def _headers(response: Response) -> Response:
    for key, value in HEADERS.items():
        response.headers[key] = value
    return response
