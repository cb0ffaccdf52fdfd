"""Settings from the environment (prefix ``CPCS_``); unset means the embedded default."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of every service. Unset values give the embedded, single-process system."""

    model_config = SettingsConfigDict(env_prefix="CPCS_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Raw uploads, catalogue tiles, the SQLite file.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset = SQLite in the data folder."
    )
    broker_url: str | None = Field(default=None, description="amqp:// URL; unset = in-process bus.")
    exchange: str = "cpcs"
    port: int = 8000
    host: str = "127.0.0.1"

    catalog_cache_url: str | None = Field(
        default=None, description="Base URL of the catalog-cache service; unset = read the local tile store."
    )
    catalog_online: bool = Field(default=False, description="Let catalog-cache query Vizier on a miss.")
    catalog_timeout_s: float = 10.0

    legacy_wait_s: float = Field(default=120.0, description="How long cgi/upload waits for the result.")
    max_upload_bytes: int = 400 * 1024 * 1024
    max_image_pixels: int = 10_000 * 10_000
    dry_run_ttl_hours: float = 24.0
    max_delivery_attempts: int = 5
    retry_base_s: float = 0.5
    outbox_poll_s: float = 0.5

    admin_token: SecretStr | None = Field(
        default=None, description="Bootstrap admin token for an empty database (else one is generated)."
    )
    demo: bool = Field(default=True, description="Seed the demo alert on an empty data folder (cpcs up).")
    log_level: str = "INFO"
    log_json: bool | None = Field(
        default=None, description="JSON logs; unset = JSON for services, text for cpcs up."
    )

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cpcs.sqlite3').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def catalogs_dir(self) -> Path:
        return self.data_dir / "catalogs"

    @property
    def embedded(self) -> bool:
        return self.broker_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
