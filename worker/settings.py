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
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.egress import EgressPolicy, for_profile, parse_networks

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MIN_PROBE_MEMORY_MB = 256  # less leaves a probe process no room beyond its start-up


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
    default_timeout_seconds: float = Field(
        10.0, ge=0.5, le=60, description="A probe's deadline when the caller sets none."
    )
    max_timeout_seconds: float = Field(60.0, ge=1, le=300, description="The largest deadline a caller may ask for.")
    worker_concurrency: int = Field(
        2000,
        ge=1,
        le=10000,
        description="Probes one worker process holds in flight at once (Celery threads that wait).",
    )
    probe_processes: int = Field(
        2, ge=1, le=64, description="Child processes of a worker that run its probes (each an event loop)."
    )
    probe_memory_mb: int = Field(
        1024,
        ge=0,
        le=1_048_576,
        description="Memory one probe process may use, in MB (its data: heap, anonymous mappings and thread stacks; "
        "RLIMIT_DATA, Linux). A process that reaches it is replaced; the test that ran out ends failed (worker_lost). "
        "0: no bound.",
    )
    queue_timeout_seconds: float = Field(
        30.0, ge=1, le=600, description="How long a job may wait for a worker before it is given up as failed."
    )
    org_concurrency_limit: int = Field(
        200, ge=1, le=100000, description="Tests one organization may have in flight at once; more get 429."
    )
    org_tests_per_minute: int = Field(
        600,
        ge=0,
        le=1_000_000,
        description="Tests one organization may start in any 60 s (sliding window); more get 429 with Retry-After. "
        "0: no limit.",
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="json: one JSON object a line (the default in production); "
        "text: readable lines (the default in development).",
    )
    log_level: str = Field(
        "INFO",
        pattern=r"(?i)^(debug|info|warning|error|critical)$",
        description="The least severe level logged by the API, the workers and the probe processes.",
    )
    worker_metrics_port: int = Field(
        9808,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics server (0: none). "
        "Workers on one machine each need their own.",
    )
    worker_metrics_address: str | None = Field(
        None,
        description="Address the worker's metrics server listens on; "
        "default 127.0.0.1 in development, 0.0.0.0 in production.",
    )
    egress_allow: str = Field(
        "",
        description="Comma-separated networks (CIDR) probes may connect to although the profile denies them, "
        "e.g. 10.20.0.0/16 for a peered VPC in production. Link-local and cloud metadata addresses stay refused.",
    )
    egress_deny: str = Field(
        "",
        description="Comma-separated networks (CIDR) probes must never connect to, on top of the profile's. "
        "The most specific network of both lists decides; on a tie, deny wins.",
    )

    @field_validator("probe_memory_mb")
    @classmethod
    def _room_to_start(cls, value: int) -> int:
        if 0 < value < MIN_PROBE_MEMORY_MB:  # a process that cannot even start would be replaced forever
            raise ValueError(f"must be 0 (no bound) or at least {MIN_PROBE_MEMORY_MB} MB")
        return value

    @field_validator("egress_allow", "egress_deny")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start, not as a silently wider policy
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.profile == "production" and self.secret_keys is None:
            raise ValueError("SOURCECHECK_SECRET_KEYS must be set in production (generate with `sourcecheck keygen`)")
        return self

    def egress_policy(self) -> EgressPolicy:
        """What probes may connect to: the profile's defaults (production refuses loopback,
        private, CGNAT, multicast, unspecified and reserved networks; development allows
        them) with ``egress_allow`` and ``egress_deny`` (see connectors.egress)."""
        return for_profile(self.profile, allow=self.egress_allow, deny=self.egress_deny)

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
