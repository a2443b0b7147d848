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
    history_retention_days: int = Field(
        30, ge=1, le=3650, description="Recorded tests of stored sources older than this are deleted (api/recorder.py)."
    )
    history_max_per_source: int = Field(
        1000, ge=1, le=1_000_000, description="At most this many recorded tests are kept per source (the newest)."
    )
    history_prune_interval_seconds: float = Field(
        600.0, gt=0, le=86400, description="How often one API process of the deployment prunes the history."
    )

    webhook_allow_http: bool | None = Field(
        None,
        description="Whether webhook URLs may be http:// (default: in development only; production wants https).",
    )
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Attempts to deliver one event to one webhook.")
    webhook_retry_base_seconds: float = Field(
        10.0, gt=0, le=3600, description="Delay before a webhook's second attempt; doubled for each next one, jittered."
    )
    webhook_retry_window_seconds: float = Field(
        3600.0, gt=0, le=7 * 86400, description="No attempt of an event is made later than this after the change."
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="How long one attempt may take: connect, send, and the receiver's answer."
    )
    webhook_log_retention_days: float = Field(
        30.0, gt=0, le=3650, description="How long finished webhook attempts (and their events) are kept."
    )
    webhook_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often an API process looks for webhook deliveries that are due."
    )

    def webhooks_allow_http(self) -> bool:
        return self.webhook_allow_http if self.webhook_allow_http is not None else self.profile == "development"

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'sourcecheck.db').resolve()}"


@cache
def get_api_settings() -> ApiSettings:
    return ApiSettings()
