"""An organization's webhook endpoints: registered (URL checked against the egress policy),
listed, deleted, and their delivery log. The signing secret is shown once, at creation,
and kept Fernet-encrypted (worker.crypto), like a stored source's configuration."""

from __future__ import annotations

import secrets

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from api.accounts import new_id
from api.errors import InvalidRequest, NotFound
from api.models import Webhook, WebhookCreated, WebhookDelivery, WebhookDeliveryPublic, WebhookPublic
from api.outbound import Policy, Refused, destination
from api.settings import ApiSettings
from connectors.errors import FieldError
from worker.crypto import Cipher

MAX_WEBHOOKS_PER_ORGANIZATION = 20
"""Endpoints one organization may register: each change is sent to every one."""
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def outbound_policy(settings: ApiSettings) -> Policy:
    return Policy(
        egress=settings.egress_policy(),
        profile=settings.profile,
        allow_http=settings.webhooks_allow_http(),
        timeout=settings.webhook_timeout_seconds,
    )


async def checked_url(url: str, policy: Policy) -> str:
    """``url`` if webhooks may be sent there now; InvalidRequest naming ``url`` otherwise."""
    try:
        await destination(url, policy)
    except Refused as refused:
        raise InvalidRequest(
            f"The webhook URL is not allowed: {refused.message}",
            errors=[FieldError(field="url", message=refused.message)],
        ) from None
    return url


def create_webhook(session: Session, cipher: Cipher, *, organization_id: str, url: str) -> WebhookCreated:
    """A new endpoint (``url`` already checked) and, in the answer only, its secret."""
    count = session.exec(
        select(func.count()).select_from(Webhook).where(Webhook.organization_id == organization_id)
    ).one()
    if count >= MAX_WEBHOOKS_PER_ORGANIZATION:
        raise InvalidRequest(
            f"An organization has at most {MAX_WEBHOOKS_PER_ORGANIZATION} webhooks: delete one first",
            errors=[FieldError(field="url", message="too many webhooks")],
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook = Webhook(
        id=new_id("wh"),
        organization_id=organization_id,
        url=url,
        secret_encrypted=cipher.encrypt_json({"secret": secret}),
    )
    session.add(webhook)
    session.commit()
    session.refresh(webhook)
    return WebhookCreated(**to_public(webhook).model_dump(), secret=secret)


def webhook_secret(cipher: Cipher, webhook: Webhook) -> str:
    """The signing secret in clear (for signing only: never shown, logged or stored so)."""
    return str(cipher.decrypt_json(webhook.secret_encrypted)["secret"])


def to_public(webhook: Webhook) -> WebhookPublic:
    return WebhookPublic(
        id=webhook.id,
        organization_id=webhook.organization_id,
        url=webhook.url,
        active=webhook.active,
        created_at=webhook.created_at,
    )


def list_webhooks(session: Session, *, organization_id: str) -> list[Webhook]:
    query = select(Webhook).where(Webhook.organization_id == organization_id).order_by(col(Webhook.created_at))
    return list(session.exec(query).all())


def find_webhook(session: Session, *, organization_id: str, webhook_id: str) -> Webhook:
    """The organization's webhook; NotFound also for another organization's."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.organization_id != organization_id:
        raise NotFound(f"Webhook {webhook_id} not found")
    return webhook


def delete_webhook(session: Session, *, webhook: Webhook) -> None:
    """The webhook, its secret and its delivery log; pending attempts are dropped with it."""
    session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook.id))
    session.delete(webhook)
    session.commit()


def list_deliveries(
    session: Session, *, webhook: Webhook, limit: int, offset: int
) -> tuple[list[WebhookDeliveryPublic], int]:
    """A page of the webhook's attempts, newest first, and how many there are in all."""
    where = col(WebhookDelivery.webhook_id) == webhook.id
    total = session.exec(select(func.count()).select_from(WebhookDelivery).where(where)).one()
    rows = session.exec(
        select(WebhookDelivery)
        .where(where)
        .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.attempt).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [WebhookDeliveryPublic.model_validate(row, from_attributes=True) for row in rows], int(total)


def reencrypt_webhooks(session: Session, cipher: Cipher) -> int:
    """Re-encrypt every webhook's secret under ``cipher``'s first key (``sourcecheck rekey``);
    raises ``InvalidToken`` for one no configured key opens, before anything is written."""
    webhooks = list(session.exec(select(Webhook)).all())
    tokens = [cipher.rotate(webhook.secret_encrypted) for webhook in webhooks]
    for webhook, token in zip(webhooks, tokens, strict=True):
        webhook.secret_encrypted = token
    session.add_all(webhooks)
    session.commit()
    return len(webhooks)
