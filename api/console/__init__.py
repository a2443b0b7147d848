"""The console: a page (``GET /console``) where a person signs in with an API key, fills a
source's form and watches its test. Its files ship in this package (no build step, nothing
from a CDN); every call it makes is an ordinary API call with the key as a Bearer token.

The page is served to anyone (it holds nothing); what it reads needs the key. Its headers
forbid inline scripts and styles, framing, and sending the page's address elsewhere.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel

from api.deps import organization_of_bearer
from api.errors import NotFound
from api.models import error_responses

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
# The only files served: a fixed list, so no path from a request ever reaches the file system.
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "forms.js": "text/javascript; charset=utf-8",
    "events.js": "text/javascript; charset=utf-8",
}

router = APIRouter(tags=["Console"])


@cache
def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def _file(name: str, media_type: str) -> Response:
    return Response(_read(name), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/console", include_in_schema=False)
def console_page() -> Response:
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/console/assets/{name}", include_in_schema=False)
def console_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"No console file {name}")
    return _file(name, ASSETS[name])


class SignedIn(BaseModel):
    organization_id: str
    organization_name: str


@router.get(
    "/console/session",
    response_model=SignedIn,
    summary="The organization of an API key",
    description="What the console asks when a person pastes a key: the key's organization (401 if none).",
    responses=error_responses(401, 503),
)
async def console_session(
    authorization: Annotated[str | None, Header(description="`Bearer <API key>`")] = None,
) -> SignedIn:
    organization = await organization_of_bearer(authorization)
    return SignedIn(organization_id=organization.id, organization_name=organization.name)
