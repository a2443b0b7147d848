"""An organization's webhooks: register, list, read, delete, and each one's delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api import webhooks
from api.db import run_db
from api.deps import CipherDep, CurrentOrg, SessionDep, SettingsDep
from api.models import (
    ID_PATTERN,
    ORGANIZATION_ERRORS,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPublic,
    WebhookPublic,
    error_responses,
)

router = APIRouter(tags=["Webhooks"], responses=error_responses(*ORGANIZATION_ERRORS))

WebhookId = Annotated[str, Path(pattern=ID_PATTERN, description="The webhook's id (`wh_*`).", examples=["wh_abc123"])]


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Register a webhook",
    description="The answer carries the signing secret, shown this once. The URL must pass the egress policy.",
)
async def create_webhook(
    org: CurrentOrg, body: WebhookCreate, session: SessionDep, cipher: CipherDep, settings: SettingsDep
) -> WebhookCreated:
    url = await webhooks.checked_url(body.url, webhooks.outbound_policy(settings))
    return await run_db(webhooks.create_webhook, session, cipher, organization_id=org.id, url=url)


@router.get("/webhooks", response_model=Page[WebhookPublic], summary="List webhooks")
def list_webhooks(org: CurrentOrg, session: SessionDep) -> Page[WebhookPublic]:
    data = [webhooks.to_public(w) for w in webhooks.list_webhooks(session, organization_id=org.id)]
    return Page(data=data, count=len(data))


@router.get("/webhooks/{webhook_id}", response_model=WebhookPublic, summary="Get a webhook")
def get_webhook(org: CurrentOrg, webhook_id: WebhookId, session: SessionDep) -> WebhookPublic:
    return webhooks.to_public(webhooks.find_webhook(session, organization_id=org.id, webhook_id=webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete a webhook and its delivery log")
def delete_webhook(org: CurrentOrg, webhook_id: WebhookId, session: SessionDep) -> Response:
    webhook = webhooks.find_webhook(session, organization_id=org.id, webhook_id=webhook_id)
    webhooks.delete_webhook(session, webhook=webhook)
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=Page[WebhookDeliveryPublic],
    summary="A webhook's delivery attempts, newest first",
    description="`count` is the number of attempts in all; page with `limit` and `offset`.",
)
def list_deliveries(
    org: CurrentOrg,
    webhook_id: WebhookId,
    session: SessionDep,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=100_000),
) -> Page[WebhookDeliveryPublic]:
    webhook = webhooks.find_webhook(session, organization_id=org.id, webhook_id=webhook_id)
    data, total = webhooks.list_deliveries(session, webhook=webhook, limit=limit, offset=offset)
    return Page(data=data, count=total)
