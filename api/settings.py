"""The API's settings: everything in ``worker.settings`` plus what only the API needs."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from worker.settings import Settings


class ApiSettings(Settings):
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the metadata database; default: a SQLite file in data_dir."
    )
    default_wait_seconds: float = Field(25.0, ge=0, le=300, description="How long a test request waits for its result by default.")
    max_wait_seconds: float = Field(60.0, ge=0, le=300, description="The largest `wait` a caller may ask for.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body accepted.")
    admission_slots: int = Field(
        8, ge=1, le=1024,
        description="Test requests one API process takes at a time from arrival until a worker starts their job; "
        "the rest wait their turn, newest first (see api.admission).",
    )

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'sourcecheck.db').resolve()}"


@cache
def get_api_settings() -> ApiSettings:
    return ApiSettings()
