"""The API's settings: everything in ``worker.settings`` plus what only the API needs."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from worker.settings import Settings


class ApiSettings(Settings):
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the metadata database; default: a SQLite file in data_dir."
    )
    default_wait_seconds: float = Field(
        25.0, ge=0, le=300, description="How long a test request waits for its result by default."
    )
    max_wait_seconds: float = Field(60.0, ge=0, le=300, description="The largest `wait` a caller may ask for.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body accepted.")
    admission_slots: int = Field(
        8,
        ge=1,
        le=1024,
        description="Test requests one API process takes at a time from arrival until a worker starts their job; "
        "the rest wait their turn, newest first (see api.admission).",
    )
    api_limit_concurrency: int = Field(
        4096,
        ge=16,
        le=100_000,
        description="Connections plus requests in flight one API process serves at once "
        "(uvicorn's --limit-concurrency); beyond it uvicorn answers 503 at once.",
    )
    api_keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=300,
        description="How long an idle kept-alive connection stays open (uvicorn's --timeout-keep-alive).",
    )
    api_head_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="How long a request's head (request line and headers) may take to arrive, from the connection's "
        "opening or the previous response; then 408 and the connection is closed (api.server.HeadBoundProtocol).",
    )
    api_max_head_bytes: int = Field(
        32 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Largest head (request line and headers) of a connection's first request; larger: 431 and the "
        "connection is closed (api.server.HeadBoundProtocol).",
    )
    events_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description="How often an idle test event stream (GET .../sources/test/{job_id}/events) sends a comment "
        "line, so that proxies do not close it.",
    )
    events_streams: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Event streams one API process reads from Redis at once (a Redis connection each); more wait "
        "their turn, sent only heartbeats meanwhile.",
    )
    metrics_port: int = Field(
        9100,
        ge=1,
        le=65535,
        description="In production, the port of the API's Prometheus /metrics (its own listener, not the API's "
        "port, where /metrics is 404). Development serves /metrics on the API's port instead. Each API process "
        "listens on it: several API processes on one machine each need their own.",
    )
    metrics_address: str = Field("0.0.0.0", description="Address the API's metrics listener binds in production.")

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'sourcecheck.db').resolve()}"


@cache
def get_api_settings() -> ApiSettings:
    return ApiSettings()
