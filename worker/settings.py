"""Every setting of sourcecheck, read from ``SOURCECHECK_*`` environment variables.

One class for the whole system (the API adds its own fields in ``api.settings``), with
defaults that run a development system on one machine with no configuration at all,
and validators that refuse those defaults in production.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOURCECHECK_", extra="ignore")

    profile: Literal["development", "production"] = Field(
        "development",
        description="development: embedded defaults, a generated key, open Flower on loopback. "
        "production: every secret must be configured.",
    )
    data_dir: Path = Field(Path(".sourcecheck"), description="Where the development profile keeps its files.")
    redis_url: str = Field(DEFAULT_REDIS_URL, description="Redis for the Celery broker and the results.")
    secret_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys. The first encrypts; all decrypt (rotation). "
        "Generate one with `sourcecheck keygen`. Development generates one into data_dir.",
    )
    result_ttl_seconds: int = Field(3600, ge=60, le=7 * 86400, description="How long a job and its result can be read.")
    default_timeout_seconds: float = Field(10.0, ge=0.5, le=60, description="A probe's deadline when the caller sets none.")
    max_timeout_seconds: float = Field(60.0, ge=1, le=300, description="The largest deadline a caller may ask for.")
    worker_concurrency: int = Field(
        2000, ge=1, le=10000, description="Probes one worker process holds in flight at once (Celery threads that wait)."
    )
    probe_processes: int = Field(2, ge=1, le=64, description="Child processes of a worker that run its probes (each an event loop).")
    queue_timeout_seconds: float = Field(
        30.0, ge=1, le=600, description="How long a job may wait for a worker before it is given up as failed."
    )
    org_concurrency_limit: int = Field(
        200, ge=1, le=100000, description="Tests one organization may have in flight at once; more get 429."
    )

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.profile == "production" and self.secret_keys is None:
            raise ValueError("SOURCECHECK_SECRET_KEYS must be set in production (generate with `sourcecheck keygen`)")
        return self

    def fernet_keys(self) -> list[str]:
        """The configured keys, or in development a key generated once into data_dir."""
        if self.secret_keys is not None:
            keys = [k.strip() for k in self.secret_keys.get_secret_value().split(",") if k.strip()]
            if not keys:
                raise ValueError("SOURCECHECK_SECRET_KEYS is empty")
            return keys
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(Fernet.generate_key().decode())
        return [path.read_text().strip()]


@cache
def get_settings() -> Settings:
    return Settings()
