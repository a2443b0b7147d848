"""Webhook deliveries: a source's status change becomes one event, sent to every active
webhook of its organization by the dispatcher of any API process, retried with backoff.

:func:`deliver_change` records the event and one ``pending`` attempt per webhook (it sends
nothing itself, so it never delays its caller by a receiver). :class:`Dispatcher` (an
asyncio task of each API process, started by the app's lifespan) claims the attempts that
are due with a conditional UPDATE (``state = 'pending'`` and no live claim: one process
wins each, on SQLite and PostgreSQL alike), POSTs them (api.outbound: signed, through the
egress policy) and records the answer. A failed attempt with attempts and time left is
followed by a new pending one ``base * 2**(n-1)`` seconds later, jittered; the last one
stays ``failed``. A process that dies holding a claim loses it after its lease, and the
attempt is sent again: receivers dedupe by event id (README, "Webhooks").
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sql
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from api.accounts import new_id
from api.metrics import WEBHOOK_DELIVERIES
from api.models import DeliveryState, TestRecordPublic, Webhook, WebhookDelivery, WebhookEvent, utcnow
from api.outbound import Answer, Policy, post
from api.settings import ApiSettings
from api.webhooks import outbound_policy, webhook_secret
from worker.crypto import Cipher

log = logging.getLogger("sourcecheck.webhooks")

EVENT_TYPE = "source.status_changed"
BATCH = 20
"""Attempts one dispatcher sends at once (each bounded by webhook_timeout_seconds)."""
PRUNE_EVERY_SECONDS = 3600.0

T = TypeVar("T")


@dataclass(frozen=True)
class WebhookChange:
    """A stored source's status changed (or gained a warning): what its webhooks are told."""

    organization_id: str
    source_id: str
    old_status: str | None
    new_status: str
    result: TestRecordPublic | Mapping[str, Any]
    """The test that made the change, as the source's history shows it (GET .../sources/{id}/tests)."""
    occurred_at: datetime = field(default_factory=utcnow)
    key: str | None = None
    """What makes the change itself (its test's job id): the same change recorded again (the
    status hook is at least once) is the same event, sent once. None: every call is new."""

    def event_id(self) -> str:
        """The event's id: derived from ``key`` when there is one, so a repeat finds it."""
        if self.key is None:
            return new_id("evt")
        digest = hashlib.sha256(f"{self.organization_id}\0{self.source_id}\0{self.key}".encode()).hexdigest()
        return f"evt_{digest[:24]}"


Sessions = Session | Callable[[], Session]
"""A session to use as it is (the caller's, in its thread), or a factory of new ones."""


async def deliver_change(sessions: Sessions, change: WebhookChange) -> None:
    """Record ``change`` for every active webhook of its organization; the dispatchers send
    it. Returns once it is stored (no receiver is waited for). A session given is committed;
    with a factory, a new session is used in a thread."""
    if isinstance(sessions, Session):
        enqueue(sessions, change)
        return

    def work() -> None:
        with sessions() as session:
            enqueue(session, change)

    await asyncio.to_thread(work)


def enqueue(session: Session, change: WebhookChange) -> str | None:
    """The event's id, with one pending attempt per active webhook; None when there is none.
    A change whose event exists already (same ``key``) adds nothing."""
    webhooks = session.exec(
        select(Webhook).where(Webhook.organization_id == change.organization_id, Webhook.active == sql.true())
    ).all()
    if not webhooks:
        return None
    event_id = change.event_id()
    if session.get(WebhookEvent, event_id) is not None:
        return event_id
    session.add(
        WebhookEvent(
            id=event_id,
            organization_id=change.organization_id,
            source_id=change.source_id,
            type=EVENT_TYPE,
            payload=event_body(event_id, change).decode(),
            created_at=change.occurred_at,
        )
    )
    session.flush()  # the event first: the attempts refer to it, and no relationship orders the inserts
    for webhook in webhooks:
        session.add(
            WebhookDelivery(
                id=new_id("dlv"),
                webhook_id=webhook.id,
                event_id=event_id,
                source_id=change.source_id,
                attempt=1,
                state=DeliveryState.PENDING,
            )
        )
    try:
        session.commit()
    except IntegrityError:  # the same change, recorded by another process at the same moment
        session.rollback()
        if session.get(WebhookEvent, event_id) is None:
            raise
    return event_id


def event_body(event_id: str, change: WebhookChange) -> bytes:
    """The JSON body every attempt of the event sends, byte for byte."""
    result = (
        change.result if isinstance(change.result, TestRecordPublic) else TestRecordPublic.model_validate(change.result)
    )
    body = {
        "id": event_id,
        "type": EVENT_TYPE,
        "source_id": change.source_id,
        "previous_status": change.old_status,
        "status": change.new_status,
        # Re-validated: only the fields of a recorded test are sent, whatever the caller passed.
        "result": result.model_dump(mode="json"),
        "occurred_at": _aware(change.occurred_at).isoformat(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _aware(moment: datetime) -> datetime:
    """SQLite gives datetimes back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    attempt: int
    url: str
    secret: str
    event_id: str
    body: bytes
    event_created_at: datetime


class Dispatcher:
    """Sends the due webhook attempts of the metadata database; one per API process, any number of processes."""

    def __init__(self, engine: Engine, cipher: Cipher, settings: ApiSettings) -> None:
        self.engine = engine
        self.cipher = cipher
        self.settings = settings
        self.policy: Policy = outbound_policy(settings)
        # A claim outlives the longest attempt, so a live sender keeps it; a dead one's expires.
        self.lease = timedelta(seconds=2 * settings.webhook_timeout_seconds + 30)

    async def run(self) -> None:
        """Send what is due every ``webhook_poll_seconds``, until cancelled; prune the log hourly."""
        pruned_at = 0.0
        while True:
            try:
                if time.monotonic() - pruned_at >= PRUNE_EVERY_SECONDS:
                    pruned_at = time.monotonic()
                    await self._db(self.prune)
                sent = await self.run_once()
            except SQLAlchemyError as exc:  # the database is down: try again next round
                log.warning("webhook dispatch: metadata database unavailable (%s)", type(exc).__name__)
                sent = 0
            except Exception:  # a bug must not end deliveries for the process's lifetime
                log.exception("webhook dispatch failed")
                sent = 0
            if sent < BATCH:
                await asyncio.sleep(self.settings.webhook_poll_seconds)

    async def run_once(self) -> int:
        """Claim, send and record the attempts due now (at most BATCH); how many were sent."""
        claimed = await self._db(self._claim)
        answers = await asyncio.gather(
            *(post(c.url, secret=c.secret, event_id=c.event_id, body=c.body, policy=self.policy) for c in claimed)
        )
        for item, answer in zip(claimed, answers, strict=True):
            await self._db(functools.partial(self._record, item, answer))
        return len(claimed)

    async def _db(self, work: Callable[[], T]) -> T:
        # As api.db.run_db: SQLite in the loop's thread (a local file), a server in a thread.
        if self.engine.dialect.name == "sqlite":
            return work()
        return await asyncio.to_thread(work)

    def prune(self) -> int:
        """Delete finished attempts older than ``webhook_log_retention_days``, and the events
        no attempt refers to any more; how many attempts went."""
        cutoff = utcnow() - timedelta(days=self.settings.webhook_log_retention_days)
        with Session(self.engine) as session:
            gone = session.execute(
                sql.delete(WebhookDelivery).where(
                    col(WebhookDelivery.state) != DeliveryState.PENDING.value, col(WebhookDelivery.created_at) < cutoff
                )
            )
            referred = select(WebhookDelivery.event_id).where(col(WebhookDelivery.event_id) == col(WebhookEvent.id))
            session.execute(
                sql.delete(WebhookEvent).where(col(WebhookEvent.created_at) < cutoff, ~sql.exists(referred))
            )
            session.commit()
        return int(gone.rowcount)  # type: ignore[attr-defined]

    def _claim(self) -> list[_Claimed]:
        now = utcnow()
        free = sql.or_(col(WebhookDelivery.claimed_until).is_(None), col(WebhookDelivery.claimed_until) < now)
        due = sql.and_(
            col(WebhookDelivery.state) == DeliveryState.PENDING.value, col(WebhookDelivery.next_attempt_at) <= now, free
        )
        with Session(self.engine) as session:
            candidates = session.exec(
                select(WebhookDelivery.id).where(due).order_by(col(WebhookDelivery.next_attempt_at)).limit(BATCH)
            ).all()
            won: list[str] = []
            for delivery_id in candidates:
                # Conditional: of several processes that saw it, only one matches the row.
                taken = session.execute(
                    sql.update(WebhookDelivery)
                    .where(col(WebhookDelivery.id) == delivery_id, due)
                    .values(claimed_until=now + self.lease)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    won.append(delivery_id)
            session.commit()
            rows = session.exec(
                select(WebhookDelivery, Webhook, WebhookEvent)
                .join(Webhook, col(Webhook.id) == col(WebhookDelivery.webhook_id))
                .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
                .where(col(WebhookDelivery.id).in_(won))
            ).all()
            return [
                _Claimed(
                    delivery_id=delivery.id,
                    attempt=delivery.attempt,
                    url=webhook.url,
                    secret=webhook_secret(self.cipher, webhook),
                    event_id=event.id,
                    body=event.payload.encode(),
                    event_created_at=_aware(event.created_at),
                )
                for delivery, webhook, event in rows
            ]

    def _record(self, claimed: _Claimed, answer: Answer) -> None:
        now = utcnow()
        with Session(self.engine) as session:
            delivery = session.get(WebhookDelivery, claimed.delivery_id)
            if delivery is None:  # the webhook was deleted meanwhile
                return
            delivery.status_code = answer.status_code
            delivery.error = answer.error
            delivery.response_excerpt = answer.excerpt
            delivery.duration_ms = answer.duration_ms
            delivery.sent_at = now
            delivery.claimed_until = None
            retry_at = None if answer.delivered else self._retry_at(claimed, now)
            if answer.delivered:
                delivery.state = DeliveryState.SUCCEEDED
                outcome = "succeeded"
            else:
                delivery.state = DeliveryState.FAILED
                outcome = "retrying" if retry_at is not None else "failed"
            session.add(delivery)
            if retry_at is not None:
                session.add(
                    WebhookDelivery(
                        id=new_id("dlv"),
                        webhook_id=delivery.webhook_id,
                        event_id=delivery.event_id,
                        source_id=delivery.source_id,
                        attempt=delivery.attempt + 1,
                        state=DeliveryState.PENDING,
                        next_attempt_at=retry_at,
                    )
                )
            session.commit()
        WEBHOOK_DELIVERIES.labels(outcome).inc()
        log.info(
            "webhook delivery %s attempt %d: %s (status %s) in %.0f ms",
            claimed.delivery_id,
            claimed.attempt,
            outcome,
            answer.status_code,
            answer.duration_ms,
        )

    def _retry_at(self, claimed: _Claimed, now: datetime) -> datetime | None:
        """When to try again after a failed attempt: None once attempts or time are spent."""
        if claimed.attempt >= self.settings.webhook_max_attempts:
            return None
        delay = self.settings.webhook_retry_base_seconds * 2 ** (claimed.attempt - 1)
        at = now + timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
        if at > claimed.event_created_at + timedelta(seconds=self.settings.webhook_retry_window_seconds):
            return None
        return at
