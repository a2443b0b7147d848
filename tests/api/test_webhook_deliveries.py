"""Webhook deliveries (api.deliveries, api.outbound) against a real receiver on loopback.

In this process: a SQLite metadata database of its own, the dispatcher's own rounds
(``run_once``), and the session's receiver (tests/servers/webhooks.py). What goes through
the running API (its lifespan's dispatcher, the routes) is in tests/api/test_webhooks.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY
from sourcecheck_client import WebhookVerificationError, verify_webhook
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session, col, select, update

from api.accounts import create_organization
from api.db import upgrade_schema
from api.deliveries import Dispatcher, WebhookChange, deliver_change
from api.errors import InvalidRequest
from api.models import DeliveryState, Webhook, WebhookDelivery, WebhookEvent, utcnow
from api.outbound import EXCERPT_CHARS
from api.settings import ApiSettings
from api.webhooks import checked_url, create_webhook, outbound_policy
from tests.helpers import assert_absent
from tests.servers.http import HttpServer
from tests.servers.postgres import PostgresServer, fresh_database
from tests.servers.webhooks import FLAKY_FAILURES, WebhookReceiver
from worker.crypto import Cipher

ORG = "org_hooks"
RESULT: dict[str, Any] = {
    "job_id": "job_1",
    "source_id": "src_1",
    "source_definition_id": "postgres",
    "status": "failed",
    "type": "authentication_failed",
    "message": 'password authentication failed for user "reader"',
    "hint": "Check the password for user 'reader'.",
    "retryable": False,
    "fields": ["user", "password"],
    "warnings": [],
    "steps": [],
    "worker": "w1@host",
    "started_at": "2026-12-04T00:00:00Z",
    "ended_at": "2026-12-04T00:00:01Z",
    "duration_ms": 1000.0,
}


@dataclass
class World:
    engine: Engine
    cipher: Cipher
    database: Path | None  # SQLite's file
    url: str

    def new_engine(self) -> Engine:
        """Another engine on the same database (another API process's)."""
        if self.database is not None:
            return create_engine(self.url, connect_args={"timeout": 15})
        return create_engine(self.url)


def _world(url: str, database: Path | None = None) -> World:
    engine = create_engine(url, connect_args={"check_same_thread": False} if database else {})
    if database is not None:  # as the API's engine (api.db): foreign keys enforced
        event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA foreign_keys=ON"))
    upgrade_schema(engine)
    with Session(engine) as session:
        create_organization(session, name="Hooks", organization_id=ORG)
    return World(engine, Cipher([Fernet.generate_key().decode()]), database, url)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    database = tmp_path / "hooks.db"
    made = _world(f"sqlite:///{database}", database)
    yield made
    made.engine.dispose()


@pytest.fixture
def postgres_world(postgres_server: PostgresServer) -> Iterator[World]:
    """A fresh database of the session's PostgreSQL cluster."""
    with fresh_database(postgres_server, "sc_webhooks_") as url:
        made = _world(url)
        try:
            yield made
        finally:
            made.engine.dispose()


def _settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "profile": "development",
        "webhook_retry_base_seconds": 0.05,
        "webhook_max_attempts": 4,
        "webhook_timeout_seconds": 5.0,
    }
    return ApiSettings(**(values | overrides))


def _register(world: World, url: str) -> tuple[str, str]:
    """A webhook of ORG at ``url`` (its id, its secret), registered as the API does after its checks."""
    with Session(world.engine) as session:
        created = create_webhook(session, world.cipher, organization_id=ORG, url=url)
    return created.id, created.secret


def _change(source_id: str = "src_1") -> WebhookChange:
    return WebhookChange(
        organization_id=ORG, source_id=source_id, old_status="succeeded", new_status="failed", result=RESULT
    )


async def _one_change(world: World, url: str, **settings: Any) -> tuple[str, str]:
    """A webhook at ``url``, one change recorded and dispatched until nothing is pending:
    (the webhook's id, its secret)."""
    webhook_id, secret = _register(world, url)
    await deliver_change(lambda: Session(world.engine), _change())
    await _drain(Dispatcher(world.engine, world.cipher, _settings(**settings)), world)
    return webhook_id, secret


async def _drain(dispatcher: Dispatcher, world: World, within: float = 20.0) -> None:
    """Dispatch until no attempt is pending (each waits for its backoff)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await dispatcher.run_once()
        if not _attempts(world, state=DeliveryState.PENDING):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("attempts still pending")


def _attempts(world: World, webhook_id: str | None = None, state: DeliveryState | None = None) -> list[WebhookDelivery]:
    with Session(world.engine) as session:
        query = select(WebhookDelivery).order_by(col(WebhookDelivery.attempt))
        if webhook_id is not None:
            query = query.where(WebhookDelivery.webhook_id == webhook_id)
        if state is not None:
            query = query.where(WebhookDelivery.state == state.value)
        return list(session.exec(query).all())


def _deliveries_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("sourcecheck_webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def test_one_change_is_one_signed_post_that_the_client_verifies(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    succeeded_before = _deliveries_counted("succeeded")
    webhook_id, secret = await _one_change(world, webhook_receiver.url("ok", key))

    [post] = webhook_receiver.posts("ok", key)
    event = verify_webhook(secret, post.headers, post.body)
    assert event.type == "source.status_changed" and event.source_id == "src_1"
    assert (event.previous_status, event.status) == ("succeeded", "failed")
    assert (event.result.job_id, event.result.type) == ("job_1", "authentication_failed")
    assert event.result.hint == "Check the password for user 'reader'."
    assert post.headers["Sourcecheck-Event-Id"] == event.id and post.headers["Content-Type"] == "application/json"
    [attempt] = _attempts(world, webhook_id)
    assert (attempt.state, attempt.status_code, attempt.attempt, attempt.error) == ("succeeded", 200, 1, None)
    assert attempt.response_excerpt == "thanks" and attempt.duration_ms is not None
    assert _deliveries_counted("succeeded") == succeeded_before + 1
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook("whsec_another", post.headers, post.body)


async def test_a_change_goes_to_every_webhook_of_its_organization_only(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    keys = [uuid.uuid4().hex for _ in range(2)]
    for key in keys:
        _register(world, webhook_receiver.url("ok", key))
    with Session(world.engine) as session:
        create_organization(session, name="Other", organization_id="org_other_hooks")
        other_key = uuid.uuid4().hex
        create_webhook(
            session, world.cipher, organization_id="org_other_hooks", url=webhook_receiver.url("ok", other_key)
        )
    with Session(world.engine) as session:
        await deliver_change(session, _change())  # the caller's own session works too
    await _drain(Dispatcher(world.engine, world.cipher, _settings()), world)
    assert [len(webhook_receiver.posts("ok", key)) for key in keys] == [1, 1]
    assert webhook_receiver.posts("ok", other_key) == []


async def test_a_receiver_failing_twice_then_answering_gets_three_attempts_all_logged(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    webhook_id, secret = await _one_change(world, webhook_receiver.url("flaky", key))

    posts = webhook_receiver.posts("flaky", key)
    assert len(posts) == FLAKY_FAILURES + 1 == 3
    events = [verify_webhook(secret, p.headers, p.body) for p in posts]
    assert len({e.id for e in events}) == 1 and len({p.body for p in posts}) == 1  # the same event, byte for byte
    attempts = _attempts(world, webhook_id)
    assert [(a.attempt, a.state, a.status_code) for a in attempts] == [
        (1, "failed", 503),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert attempts[0].error == "the receiver answered HTTP 503"
    assert attempts[0].response_excerpt == "not now [31m"  # control characters cleaned out
    # Exponential backoff: the second wait is longer than the first (base 0.05 s, jitter 0.5-1).
    sent = [a.sent_at for a in attempts]
    assert all(s is not None for s in sent)
    assert sent[1] - sent[0] >= timedelta(seconds=0.025) and sent[2] - sent[1] >= timedelta(seconds=0.05)  # type: ignore[operator]


async def test_a_receiver_that_always_fails_gets_a_bounded_number_of_attempts_then_failed(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    webhook_id, _ = _register(world, webhook_receiver.url("down", key))
    failed_before = _deliveries_counted("failed")
    await deliver_change(lambda: Session(world.engine), _change())
    dispatcher = Dispatcher(world.engine, world.cipher, _settings(webhook_max_attempts=4))
    await _drain(dispatcher, world)
    await asyncio.sleep(0.3)
    await dispatcher.run_once()  # nothing more is due, ever
    assert len(webhook_receiver.posts("down", key)) == 4
    attempts = _attempts(world, webhook_id)
    assert [(a.attempt, a.state) for a in attempts] == [(n, "failed") for n in (1, 2, 3, 4)]
    assert _deliveries_counted("failed") == failed_before + 1


async def test_no_attempt_is_made_after_the_retry_window(world: World, webhook_receiver: WebhookReceiver) -> None:
    key = uuid.uuid4().hex
    webhook_id, _ = _register(world, webhook_receiver.url("down", key))
    await deliver_change(lambda: Session(world.engine), _change())
    # Attempts 2, 3, 4 would come ~0.5, ~1.5, ~3.5 s after the change: the window ends first.
    settings = _settings(webhook_max_attempts=10, webhook_retry_base_seconds=0.5, webhook_retry_window_seconds=1.2)
    await _drain(Dispatcher(world.engine, world.cipher, settings), world)
    attempts = _attempts(world, webhook_id)
    assert 1 < len(attempts) <= 3 and attempts[-1].state == "failed"
    assert len(webhook_receiver.posts("down", key)) == len(attempts)


async def test_every_attempt_is_sent_once_by_several_dispatchers_at_once(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    """Three API processes' dispatchers (each its own engine and event loop, in threads) share
    the table: the conditional claim gives each attempt to one of them."""
    await _race(world, webhook_receiver)


async def test_every_attempt_is_sent_once_by_several_dispatchers_on_postgres(
    postgres_world: World, webhook_receiver: WebhookReceiver
) -> None:
    await _race(postgres_world, webhook_receiver)


async def _race(world: World, webhook_receiver: WebhookReceiver) -> None:
    keys = [uuid.uuid4().hex for _ in range(5)]
    for key in keys:
        _register(world, webhook_receiver.url("ok", key))
    for n in range(4):
        await deliver_change(lambda: Session(world.engine), _change(f"src_{n}"))
    sent: list[int] = []

    def dispatch() -> None:
        engine = world.new_engine()
        dispatcher = Dispatcher(engine, world.cipher, _settings())
        for _ in range(5):
            sent.append(asyncio.run(dispatcher.run_once()))
        engine.dispose()

    threads = [threading.Thread(target=dispatch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    attempts = _attempts(world)
    assert sum(sent) == len(attempts) == 20
    assert all(a.state == "succeeded" and a.attempt == 1 for a in attempts), [a.error for a in attempts]
    assert [len(webhook_receiver.posts("ok", key)) for key in keys] == [4] * 5


async def test_a_large_answer_is_not_read_beyond_a_short_excerpt(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    webhook_id, _ = await _one_change(world, webhook_receiver.url("large", key))
    [attempt] = _attempts(world, webhook_id)
    assert attempt.state == "succeeded"
    assert attempt.response_excerpt is not None and len(attempt.response_excerpt) == EXCERPT_CHARS


async def test_a_redirect_is_not_followed(world: World, webhook_receiver: WebhookReceiver) -> None:
    key = uuid.uuid4().hex
    webhook_id, _ = await _one_change(world, webhook_receiver.url("redirect", key), webhook_max_attempts=1)
    [attempt] = _attempts(world, webhook_id)
    assert (attempt.state, attempt.status_code) == ("failed", 302)
    assert webhook_receiver.posts("ok", f"{key}-redirected") == []


async def test_each_attempt_is_held_to_the_egress_policy_again(world: World, webhook_receiver: WebhookReceiver) -> None:
    """A URL allowed at registration, refused when sent (the operator closed loopback since):
    nothing is connected to, and the log says why."""
    key = uuid.uuid4().hex
    webhook_id, _ = _register(world, webhook_receiver.url("ok", key))
    await deliver_change(lambda: Session(world.engine), _change())
    closed = _settings(webhook_max_attempts=1, egress_deny="127.0.0.0/8")
    await _drain(Dispatcher(world.engine, world.cipher, closed), world)
    [attempt] = _attempts(world, webhook_id)
    assert attempt.state == "failed" and attempt.status_code is None
    assert attempt.error is not None and "egress policy" in attempt.error
    assert webhook_receiver.posts("ok", key) == []


async def test_a_webhook_pointed_at_the_metadata_address_is_never_connected_to(world: World) -> None:
    with Session(world.engine) as session:  # as if written before the rule, or by hand: registration refuses it
        created = create_webhook(session, world.cipher, organization_id=ORG, url="http://169.254.169.254/latest/")
    await deliver_change(lambda: Session(world.engine), _change())
    await _drain(Dispatcher(world.engine, world.cipher, _settings(webhook_max_attempts=1)), world)
    [attempt] = _attempts(world, created.id)
    assert attempt.state == "failed" and attempt.error is not None
    assert "a cloud metadata address" in attempt.error and "egress policy" in attempt.error


async def test_the_secret_is_stored_only_encrypted(world: World, webhook_receiver: WebhookReceiver) -> None:
    webhook_id, secret = await _one_change(world, webhook_receiver.url("ok", uuid.uuid4().hex))
    with Session(world.engine) as session:
        stored = session.get(Webhook, webhook_id)
        assert stored is not None and world.cipher.decrypt_json(stored.secret_encrypted) == {"secret": secret}
    world.engine.dispose()
    assert world.database is not None
    for path in world.database.parent.glob("hooks.db*"):  # the WAL too
        assert_absent(secret, path.read_bytes(), path.name)


async def test_a_receiver_that_stalls_is_given_up_at_the_attempts_timeout(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    started = time.monotonic()
    webhook_id, _ = await _one_change(
        world, webhook_receiver.url("slow", key), webhook_max_attempts=1, webhook_timeout_seconds=0.5
    )
    assert time.monotonic() - started < 2.0
    [attempt] = _attempts(world, webhook_id)
    assert attempt.state == "failed" and attempt.error == "no answer within 0.5 s"


@pytest.mark.parametrize(
    ("profile", "allow_http", "allowed"),
    [
        ("production", None, False),
        ("production", True, True),
        ("development", None, True),
        ("development", False, False),
    ],
)
async def test_http_urls_are_refused_in_production_unless_allowed(
    profile: str, allow_http: bool | None, allowed: bool
) -> None:
    settings = ApiSettings(
        profile=profile,
        webhook_allow_http=allow_http,
        secret_keys=Fernet.generate_key().decode(),
        egress_allow="127.0.0.0/8",
    )
    policy = outbound_policy(settings)
    assert policy.allow_http is allowed
    if allowed:
        assert await checked_url("http://127.0.0.1:9/hook", policy) == "http://127.0.0.1:9/hook"
    else:
        with pytest.raises(InvalidRequest, match="must be https://"):
            await checked_url("http://127.0.0.1:9/hook", policy)
    if profile == "production":  # loopback is refused there unless the operator allows it
        closed = outbound_policy(ApiSettings(profile="production", secret_keys=Fernet.generate_key().decode()))
        with pytest.raises(InvalidRequest, match="a loopback address"):
            await checked_url("https://127.0.0.1/hook", closed)


async def test_an_https_receiver_whose_certificate_is_not_trusted_gets_nothing(
    world: World, https_server: HttpServer
) -> None:
    """The certificate is checked against the system's CAs (this one's CA is the test session's)."""
    webhook_id, _ = await _one_change(world, https_server.url("/ok"), webhook_max_attempts=1)
    [attempt] = _attempts(world, webhook_id)
    assert attempt.state == "failed" and attempt.status_code is None
    assert attempt.error is not None and "certificate" in attempt.error
    assert https_server.requests == [] and https_server.handshakes == []


async def test_a_host_name_is_resolved_checked_and_posted_to_with_its_name(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    key = uuid.uuid4().hex
    port = webhook_receiver.base_url.rsplit(":", 1)[1]
    webhook_id, _ = await _one_change(world, f"http://localhost:{port}/ok/{key}")
    [post] = webhook_receiver.posts("ok", key)
    assert post.headers["Host"] == f"localhost:{port}"
    assert _attempts(world, webhook_id)[0].state == "succeeded"


async def test_finished_attempts_past_the_retention_are_pruned_with_their_events(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    webhook_id, _ = await _one_change(world, webhook_receiver.url("ok", uuid.uuid4().hex))
    await deliver_change(lambda: Session(world.engine), _change("src_recent"))
    with Session(world.engine) as session:  # the first change, and its attempt, 31 days old; the second pending
        session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.source_id) == "src_1")
            .values(created_at=utcnow() - timedelta(days=31))
        )
        session.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.source_id) == "src_1")
            .values(created_at=utcnow() - timedelta(days=31))
        )
        session.commit()
    dispatcher = Dispatcher(world.engine, world.cipher, _settings(webhook_log_retention_days=30))
    assert dispatcher.prune() == 1
    with Session(world.engine) as session:
        assert [e.source_id for e in session.exec(select(WebhookEvent)).all()] == ["src_recent"]
    assert [(a.source_id, a.state) for a in _attempts(world, webhook_id)] == [("src_recent", "pending")]
    assert dispatcher.prune() == 0


async def test_the_same_change_recorded_twice_is_one_event_sent_once(
    world: World, webhook_receiver: WebhookReceiver
) -> None:
    """The status hook is at least once: a change keyed by its test's job id is not sent twice."""
    key = uuid.uuid4().hex
    webhook_id, secret = _register(world, webhook_receiver.url("ok", key))
    change = WebhookChange(
        organization_id=ORG, source_id="src_1", old_status="succeeded", new_status="failed", result=RESULT, key="job_1"
    )
    for _ in range(2):
        await deliver_change(lambda: Session(world.engine), change)
    await _drain(Dispatcher(world.engine, world.cipher, _settings()), world)
    await deliver_change(lambda: Session(world.engine), change)  # again after it was sent
    await _drain(Dispatcher(world.engine, world.cipher, _settings()), world)
    [post] = webhook_receiver.posts("ok", key)
    assert verify_webhook(secret, post.headers, post.body).id == change.event_id()
    assert len(_attempts(world, webhook_id)) == 1
    other_job = WebhookChange(
        organization_id=ORG, source_id="src_1", old_status="failed", new_status="succeeded", result=RESULT, key="job_2"
    )
    await deliver_change(lambda: Session(world.engine), other_job)
    await _drain(Dispatcher(world.engine, world.cipher, _settings()), world)
    assert len(webhook_receiver.posts("ok", key)) == 2
