"""The Python client (client/, ``sourcecheck_client``), sync and async, against the real stack."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from sourcecheck_client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    AuthenticationError,
    Client,
    JobInfo,
    NotFoundError,
    PollTimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    Source,
    Step,
    TestRecord,
    TestRecordPage,
    TestResult,
    ValidationError,
)
from sourcecheck_client._core import Core
from sourcecheck_client.errors import error_from_response

from tests.servers.postgres import PostgresServer
from tests.servers.stack import Stack
from tests.servers.tcp import HostPort

POSTGRES_STEPS = ["resolve", "tcp", "tls", "authenticate", "access"]
WRONG = "Wrong-Client-Password-77ab"


def _client(stack: Stack, token: str | None = None) -> Client:
    return Client(api_key=token or stack.token, base_url=stack.base_url)


def _async_client(stack: Stack, token: str | None = None) -> AsyncClient:
    return AsyncClient(api_key=token or stack.token, base_url=stack.base_url)


def _hung_config(hung: HostPort) -> dict[str, object]:
    return {"host": hung.host, "port": hung.port, "database": "app", "user": "u", "password": "p"}


# --- sync, end to end ----------------------------------------------------------------------


@pytest.mark.e2e
def test_inline_test_succeeds_with_typed_job_info(stack: Stack, postgres_server: PostgresServer) -> None:
    with _client(stack) as client:
        result = client.knowledge_connectors.test_source(
            organization_id=stack.org_id,
            source_definition_id="postgres",
            configuration=postgres_server.config(),
            name="replica",
        )
    assert isinstance(result, TestResult)
    assert result.succeeded and result.final and not result.failed
    info = result.job_info
    assert isinstance(info, JobInfo)
    assert info.job_id.startswith("job_") and result.job_id == info.job_id
    assert info.source_definition_id == "postgres" and info.name == "replica" and info.source_id is None
    assert isinstance(info.created_at, datetime) and info.ended_at is not None
    assert [s.name for s in info.steps] == POSTGRES_STEPS
    assert all(isinstance(s, Step) and s.status == "succeeded" for s in info.steps)
    assert info.type is None and info.hint is None


@pytest.mark.e2e
def test_stored_source_lifecycle_and_test(stack: Stack, postgres_server: PostgresServer) -> None:
    with Client(api_key=stack.token, base_url=stack.base_url, organization_id=stack.org_id) as client:
        sources = client.knowledge_connectors.sources
        source = sources.create(
            source_definition_id="postgres", name="warehouse", configuration=postgres_server.config()
        )
        assert isinstance(source, Source) and source.id.startswith("src_")
        assert source.configuration["password"] == "**********"
        assert source.id in [s.id for s in sources.list()]
        assert sources.get(source.id).name == "warehouse"
        renamed = sources.update(source.id, name="renamed", configuration={"password": "**********"})
        assert renamed.name == "renamed"

        result = client.knowledge_connectors.test_source(source_id=source.id)
        assert result.succeeded, result
        assert result.job_info is not None and result.job_info.source_id == source.id

        # Fields overridden for one test, not saved.
        overridden = client.knowledge_connectors.test_source(source_id=source.id, configuration={"password": WRONG})
        assert overridden.failed and overridden.job_info is not None
        assert overridden.job_info.type == "authentication_failed"

        sources.delete(source.id)
        with pytest.raises(NotFoundError) as missing:
            sources.get(source.id)
    assert missing.value.status_code == 404 and missing.value.code == "not_found"


@pytest.mark.e2e
def test_a_stored_sources_history_and_last_test(stack: Stack, postgres_server: PostgresServer) -> None:
    with Client(api_key=stack.token, base_url=stack.base_url, organization_id=stack.org_id) as client:
        kc = client.knowledge_connectors
        source = kc.sources.create(
            source_definition_id="postgres", name="history", configuration=postgres_server.config()
        )
        assert source.last_test is None
        jobs = [kc.test_source(source_id=source.id).job_id for _ in range(2)]
        deadline = time.monotonic() + 15
        while (page := kc.list_source_tests(source.id)).count < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the API records a result just after answering it
        assert isinstance(page, TestRecordPage) and [r.job_id for r in page.data] == jobs[::-1]
        assert isinstance(page.data[0], TestRecord) and page.data[0].status == "succeeded"
        assert [r.job_id for r in kc.list_source_tests(source.id, limit=1, offset=1).data] == jobs[:1]
        last = kc.sources.get(source.id).last_test
        assert last is not None and (last.status, last.type) == ("succeeded", None)
        kc.sources.delete(source.id)


@pytest.mark.e2e
def test_failed_test_is_a_result_with_its_type_and_hint(stack: Stack, postgres_server: PostgresServer) -> None:
    with _client(stack) as client:
        result = client.knowledge_connectors.test_source(
            organization_id=stack.org_id,
            source_definition_id="postgres",
            configuration=postgres_server.config(password=WRONG),
        )
    assert result.failed and not result.succeeded and result.final
    info = result.job_info
    assert info is not None
    assert info.type == "authentication_failed" and info.retryable is False
    assert info.message and postgres_server.user in info.message
    assert info.hint
    assert [s.status for s in info.steps if s.name == "authenticate"] == ["failed"]
    assert WRONG not in result.model_dump_json()


@pytest.mark.e2e
def test_a_202_is_polled_until_final(stack: Stack, hung_server: HostPort) -> None:
    with _client(stack) as client:
        kc = client.knowledge_connectors
        # Without polling, wait=0 gives the API's first answer: not final yet.
        first = kc.test_source(
            organization_id=stack.org_id,
            source_definition_id="postgres",
            configuration=_hung_config(hung_server),
            timeout=2,
            wait=0,
            poll=False,
        )
        assert not first.final and first.status in ("pending", "running")
        assert first.job_id is not None
        # With polling (the default), the same call comes back with the final result.
        result = kc.test_source(
            organization_id=stack.org_id,
            source_definition_id="postgres",
            configuration=_hung_config(hung_server),
            timeout=2,
            wait=0,
        )
        assert result.final and result.failed
        assert result.job_info is not None and result.job_info.type == "timeout"
        assert result.job_info.timeout_seconds == 2
        # A job sent earlier can be waited for by its id.
        waited = kc.wait_for_result(first.job_id, organization_id=stack.org_id)
        assert waited.final and waited.job_id == first.job_id


@pytest.mark.e2e
def test_no_final_result_within_the_poll_timeout_raises_with_the_last_result(
    stack: Stack, hung_server: HostPort
) -> None:
    with _client(stack) as client:
        with pytest.raises(PollTimeoutError) as raised:
            client.knowledge_connectors.test_source(
                organization_id=stack.org_id,
                source_definition_id="postgres",
                configuration=_hung_config(hung_server),
                timeout=20,
                wait=0,
                poll_timeout=1,
            )
        job_id = raised.value.result.job_id
        assert job_id is not None and not raised.value.result.final
        # Still pollable by its id.
        again = client.knowledge_connectors.get_test_result(job_id, organization_id=stack.org_id, wait=0)
        assert again.job_id == job_id


@pytest.mark.e2e
def test_errors_are_typed(stack: Stack) -> None:
    with Client(api_key="sck_000000000000_" + "x" * 43, base_url=stack.base_url) as bad:
        with pytest.raises(AuthenticationError) as unauthorized:
            bad.knowledge_connectors.source_definitions.list(organization_id=stack.org_id)
    assert unauthorized.value.status_code == 401 and unauthorized.value.code == "unauthorized"

    with _client(stack) as client:
        kc = client.knowledge_connectors
        with pytest.raises(NotFoundError):
            kc.test_source(organization_id=stack.org_id, source_id="src_doesnotexist")
        with pytest.raises(NotFoundError):  # the token's organization is another one
            kc.sources.list(organization_id=stack.other_org_id)
        with pytest.raises(NotFoundError):
            kc.get_test_result("job_0123456789abcdef0123456789abcdef", organization_id=stack.org_id)

        secret = "Client-Secret-Never-Echoed-1"
        with pytest.raises(ValidationError) as invalid:
            kc.test_source(
                organization_id=stack.org_id,
                source_definition_id="postgres",
                configuration={"host": "db", "port": "not-a-port", "password": secret},
            )
        assert invalid.value.status_code == 422 and invalid.value.code == "invalid_configuration"
        assert {"configuration.port", "configuration.user"} <= set(invalid.value.fields)
        assert all(e.message for e in invalid.value.errors)
        assert secret not in str(invalid.value) and secret not in repr(invalid.value.errors)

        with pytest.raises(ValidationError) as neither:
            kc.test_source(organization_id=stack.org_id)
        assert "source_id" in neither.value.message
        assert isinstance(neither.value, APIError)


@pytest.mark.e2e
def test_source_definitions(stack: Stack) -> None:
    with _client(stack) as client:
        definitions = client.knowledge_connectors.source_definitions
        ids = [d.id for d in definitions.list(organization_id=stack.org_id)]
        assert {"postgres", "mysql", "http"} <= set(ids)
        postgres = definitions.get("postgres", organization_id=stack.org_id)
        assert "password" in postgres.secret_fields
        assert postgres.connection_specification["type"] == "object"
        with pytest.raises(NotFoundError):
            definitions.get("no-such-definition", organization_id=stack.org_id)


# --- async, end to end ---------------------------------------------------------------------


@pytest.mark.e2e
async def test_async_inline_success_and_failure(stack: Stack, postgres_server: PostgresServer) -> None:
    async with _async_client(stack) as client:
        ok = await client.knowledge_connectors.test_source(
            organization_id=stack.org_id, source_definition_id="postgres", configuration=postgres_server.config()
        )
        bad = await client.knowledge_connectors.test_source(
            organization_id=stack.org_id,
            source_definition_id="postgres",
            configuration=postgres_server.config(password=WRONG),
        )
    assert ok.succeeded and ok.job_info is not None
    assert [s.name for s in ok.job_info.steps] == POSTGRES_STEPS
    assert bad.failed and bad.job_info is not None and bad.job_info.type == "authentication_failed"


@pytest.mark.e2e
async def test_async_stored_source_and_202_polling(
    stack: Stack, postgres_server: PostgresServer, hung_server: HostPort
) -> None:
    async with AsyncClient(api_key=stack.token, base_url=stack.base_url, organization_id=stack.org_id) as client:
        kc = client.knowledge_connectors
        source = await kc.sources.create(
            source_definition_id="postgres", name="async", configuration=postgres_server.config()
        )
        assert (await kc.test_source(source_id=source.id)).succeeded
        assert source.id in [s.id for s in await kc.sources.list()]
        page = await kc.list_source_tests(source.id, limit=1)
        assert isinstance(page, TestRecordPage) and page.count <= 1
        await kc.sources.delete(source.id)

        polled = await kc.test_source(
            source_definition_id="postgres", configuration=_hung_config(hung_server), timeout=2, wait=0
        )
        assert polled.final and polled.job_info is not None and polled.job_info.type == "timeout"
        assert "postgres" in [d.id for d in await kc.source_definitions.list()]


@pytest.mark.e2e
async def test_async_errors_are_typed(stack: Stack) -> None:
    async with AsyncClient(api_key="sck_000000000000_" + "y" * 43, base_url=stack.base_url) as bad:
        with pytest.raises(AuthenticationError):
            await bad.knowledge_connectors.sources.list(organization_id=stack.org_id)
    async with _async_client(stack) as client:
        with pytest.raises(NotFoundError):
            await client.knowledge_connectors.sources.get("src_doesnotexist", organization_id=stack.org_id)
        with pytest.raises(ValidationError) as invalid:
            await client.knowledge_connectors.test_source(
                organization_id=stack.org_id, source_definition_id="postgres", configuration={"host": "db"}
            )
        assert "configuration.user" in invalid.value.fields


# --- without the stack ---------------------------------------------------------------------


def test_unreachable_api_is_a_connection_error(closed_port: int) -> None:
    with Client(api_key="sck_x", base_url=f"http://127.0.0.1:{closed_port}", organization_id="org_x") as client:
        with pytest.raises(APIConnectionError) as raised:
            client.knowledge_connectors.source_definitions.list()
    assert isinstance(raised.value, APIError) and raised.value.status_code is None


async def test_async_unreachable_api_is_a_connection_error(closed_port: int) -> None:
    async with AsyncClient(
        api_key="sck_x", base_url=f"http://127.0.0.1:{closed_port}", organization_id="org_x"
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.knowledge_connectors.sources.list()


def test_arguments_are_checked_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCECHECK_TOKEN", raising=False)
    with pytest.raises(ValueError, match="API key"):
        Client()
    with pytest.raises(ValueError, match="base_url"):
        Client(api_key="sck_x", base_url="ftp://example.com")
    with Client(api_key="sck_x") as client:
        with pytest.raises(ValueError, match="organization_id"):
            client.knowledge_connectors.sources.list()
        with pytest.raises(ValueError, match="source_id"):
            client.knowledge_connectors.sources.get("..", organization_id="org_x")


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_error_bodies_map_to_the_hierarchy() -> None:
    busy = error_from_response(
        _response(429, {"error": {"code": "too_many_requests", "message": "busy"}}, {"Retry-After": "3"})
    )
    assert isinstance(busy, RateLimitError) and busy.retry_after == 3 and busy.message == "busy"
    down = error_from_response(
        _response(503, {"error": {"code": "service_unavailable", "message": "Redis"}}, {"Retry-After": "5"})
    )
    assert isinstance(down, ServiceUnavailableError) and down.retry_after == 5
    invalid = error_from_response(
        _response(
            422,
            {
                "error": {
                    "code": "invalid_request",
                    "message": "bad",
                    "errors": [{"field": "wait", "message": "too big"}],
                }
            },
        )
    )
    assert isinstance(invalid, ValidationError) and invalid.fields == ["wait"]
    other = error_from_response(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert type(other) is APIError and other.status_code == 502 and "Bad gateway" in other.message


def test_a_location_is_followed_only_on_the_base_url() -> None:
    core = Core(httpx.URL("https://api.example.com/sourcecheck/"), "org_a")
    job_path = "/v1/organizations/org_a/knowledge/connectors/sources/test/job_1"
    same = f"https://api.example.com/sourcecheck{job_path}"
    assert core.poll_url(same, None, "job_1") == same
    assert core.poll_url(f"/sourcecheck{job_path}", None, "job_1") == same
    # Another host, or outside the base path: the token is not sent there, the job's own path is polled.
    assert core.poll_url(f"https://elsewhere.example.com/sourcecheck{job_path}", None, "job_1") == job_path
    assert core.poll_url(f"https://api.example.com{job_path}", None, "job_1") == job_path
    assert core.poll_url(None, "org_b", "job_1") == job_path.replace("org_a", "org_b")
