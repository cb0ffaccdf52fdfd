"""Settings from the environment (prefix ``CPCS_``); unset means the embedded default."""

from __future__ import annotations

import ipaddress
import urllib.parse
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cpcs.catalogs.solar_system import SKYBOT_URL
from cpcs.catalogs.survey_templates import HIPS2FITS_URL


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
    metrics_port: int | None = Field(
        default=None,
        description="Where a process without HTTP routes (the calibrate and reduce workers) answers "
        "/metrics; unset = nowhere. HTTP services answer /metrics on their own port.",
    )
    public_url: str = Field(
        default="",
        description="The public base URL clients reach CPCS at (e.g. https://cpcs.example.org/): status_url, "
        "Location and the links CPCS writes start with it; empty = http://HOST:PORT/. The request's Host "
        "header is never used. Without a gateway in front (each service its own port): the api's URL.",
    )
    ingest_public_url: str = Field(
        default="",
        description="Where clients reach the ingest service, when it is not under public_url (no gateway, "
        "e.g. http://cpcs.example.org:8001/): the upload page posts there; empty = the page's own origin.",
    )

    catalog_cache_url: str | None = Field(
        default=None, description="Base URL of the catalog-cache service; unset = read the local tile store."
    )
    catalog_online: bool = Field(default=False, description="Let catalog-cache query Vizier on a miss.")
    catalog_timeout_s: float = 10.0
    catalogue_candidate_margin_mag: float = Field(
        default=1.0,
        description="Frames without a template: a catalogued star this much brighter is a candidate.",
    )
    skybot_url: str = Field(
        default=SKYBOT_URL,
        description="IMCCE SkyBoT cone search (known Solar System objects; online only).",
    )
    hips2fits_url: str = Field(
        default=HIPS2FITS_URL,
        description="CDS hips2fits: Pan-STARRS cutouts as survey templates (online only).",
    )
    solar_system_timeout_s: float = Field(
        default=5.0, description="Time limit of the SkyBoT request; after it, a note on the candidates."
    )

    legacy_wait_s: float = Field(default=120.0, description="How long cgi/upload waits for the result.")
    max_upload_bytes: int = 400 * 1024 * 1024
    max_image_pixels: int = 10_000 * 10_000
    dry_run_ttl_hours: float = 24.0
    delivery_retention_days: float = Field(
        default=365.0, description="Housekeeping deletes deliveries finished this long ago; 0 = keep all."
    )
    dry_run_version_retention_days: float = Field(
        default=90.0, description="Housekeeping deletes dry-run calibration versions this old; 0 = keep all."
    )
    max_delivery_attempts: int = 5
    retry_base_s: float = 0.5
    outbox_poll_s: float = 0.5

    # The HTTP door: cpcs.security says what is enforced where.
    max_request_bytes: int = Field(
        default=1024 * 1024, description="Body limit of every route but the uploads (JSON, legacy forms)."
    )
    max_form_overhead_bytes: int = Field(
        default=256 * 1024, description="What an upload body may carry beyond max_upload_bytes: fields."
    )
    request_timeout_s: float = Field(default=60.0, description="Time limit of a request; 0 = none.")
    upload_timeout_s: float = Field(
        default=600.0, description="Time limit of an upload (body, checks), plus legacy_wait_s; 0 = none."
    )
    http_keep_alive_s: int = Field(default=5, description="Idle keep-alive connections close after this.")
    http_header_timeout_s: float = Field(
        default=20.0, description="A connection must complete its request line and headers within this."
    )
    http_max_header_bytes: int = Field(default=16 * 1024, description="Request line and headers, at most.")
    trusted_proxies: str = Field(
        default="",
        description="Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For "
        "names the client; empty = none, the connection's peer is the client.",
    )
    cors_origins: str = Field(
        default="", description="Origins allowed to write from a browser (comma-separated); GET is open."
    )
    auth_failure_window_s: float = Field(default=60.0, description="Window of the failed-token counters.")
    auth_failures_per_token: int = Field(
        default=10, description="Failures of one client with one token before that token gets 429; 0 = off."
    )
    auth_failures_per_client: int = Field(
        default=30,
        description="Failures of one client before its wrong tokens get 429 (valid ones never); 0 = off.",
    )

    tns_url: str | None = Field(
        default=None,
        description="Base URL of the TNS API the photometry reports go to (e.g. https://www.wis-tns.org, or "
        "https://sandbox.wis-tns.org); unset = sending to TNS is off (reports can still be reviewed).",
    )
    tns_api_key: SecretStr | None = Field(default=None, description="The TNS bot's API key.")
    tns_bot_id: int | None = Field(default=None, description="The TNS bot's id (its tns_marker).")
    tns_bot_name: str = Field(default="", description="The TNS bot's name (its tns_marker).")
    tns_reporting_group_id: int = Field(default=0, description="TNS group id the reports are made for.")
    tns_data_source_id: int = Field(default=0, description="TNS data source group id of the reports.")
    tns_instrument_ids: dict[str, int] = Field(
        default_factory=dict,
        description='Observatory names -> TNS instrument ids (JSON, e.g. {"Ostrowik 0.6m": 123}); others 0.',
    )
    tns_timeout_s: float = Field(default=30.0, description="Time limit of one request to TNS.")

    outbound_backoff_s: tuple[float, ...] = Field(
        default=(30.0, 120.0, 600.0, 3600.0, 21600.0),
        description="Outbound deliveries: wait before retry n (the last value repeats); JSON list.",
    )
    outbound_max_attempts: int = Field(
        default=6, ge=1, description="Attempts per delivery, the first included."
    )
    outbound_timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout of one delivery attempt.")
    outbound_lease_s: float = Field(
        default=120.0, gt=0, description="How long a taken delivery is hidden from other workers."
    )
    outbound_poll_s: float = Field(
        default=5.0, gt=0, description="Longest sleep between looks for due deliveries."
    )
    outbound_workers: int = Field(default=2, ge=1, description="Delivery sending threads per api process.")
    outbound_allow_private_targets: bool = Field(
        default=False,
        description="Let webhooks and SkyPortal destinations reach loopback/private/link-local addresses.",
    )
    outbound_trust_env: bool = Field(
        default=True, description="Let deliveries use the proxy settings of the environment."
    )

    hermes_topic: str | None = Field(
        default=None,
        description="Hopskotch topic the points are published to as Hermes messages (e.g. hermes.test); "
        "unset = Hermes is off.",
    )
    hermes_broker_url: str = Field(
        default="kafka://kafka.scimma.org/",
        description="The Kafka broker of SCiMMA's Hopskotch (kafka://host[:port]/).",
    )
    hermes_username: str | None = Field(default=None, description="The hop credential's user name.")
    hermes_password: SecretStr | None = Field(default=None, description="The hop credential's password.")
    hermes_submitter: str = Field(default="CPCS", description="The submitter named in every Hermes message.")
    hermes_alert_filter: str | None = Field(
        default=None,
        description="Glob on the alert names (with or without ivo://) published; unset = all.",
    )
    hermes_timeout_s: float = Field(default=30.0, gt=0, description="Time limit of one publication to Kafka.")

    admin_token: SecretStr | None = Field(
        default=None, description="Bootstrap admin token for an empty database (else one is generated)."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet keys that encrypt webhook secrets and SkyPortal tokens in the database "
        "(comma-separated: the first encrypts, all decrypt; `cpcs secrets new-key` makes one). Unset: "
        "SQLite uses secret.key beside its file, generated once; PostgreSQL needs it set, the same in "
        "every api process.",
    )
    secret_key_file: Path | None = Field(
        default=None, description="A file holding the keys instead (e.g. a Docker or Kubernetes secret)."
    )
    otel_exporter: str | None = Field(
        default=None,
        description="Where OpenTelemetry traces go: none, otlp (to OTEL_EXPORTER_OTLP_ENDPOINT), console, or "
        "file:PATH (JSON lines; {service} and {pid} in PATH are filled in). Unset: otlp when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else none (off).",
    )
    demo: bool = Field(default=True, description="Seed the demo alert on an empty data folder (cpcs up).")
    log_level: str = "INFO"
    log_json: bool | None = Field(
        default=None, description="JSON logs; unset = JSON for services, text for cpcs up."
    )

    @model_validator(mode="after")
    def _outbound_timing(self) -> Settings:
        if not self.outbound_backoff_s or any(delay < 0 for delay in self.outbound_backoff_s):
            raise ValueError("outbound_backoff_s needs at least one non-negative delay")
        if self.outbound_lease_s <= self.outbound_timeout_s:
            raise ValueError("outbound_lease_s must be longer than outbound_timeout_s")
        return self

    def outbound_backoff(self, failed_attempts: int) -> float:
        """Seconds a delivery waits after ``failed_attempts`` (>= 1) failed attempts."""
        return self.outbound_backoff_s[min(failed_attempts, len(self.outbound_backoff_s)) - 1]

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
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR network (a proxy that "
                    "forwards the client's address, e.g. 10.0.0.5 or 10.0.0.0/24; '*' is not accepted)"
                ) from None
        return value

    @field_validator("otel_exporter")
    @classmethod
    def _exporter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value in ("none", "otlp", "console"):
            return value
        if value.startswith("file:") and value[5:].strip():
            try:
                value[5:].format(service="api", pid=1)
            except (KeyError, IndexError, ValueError):
                raise ValueError(
                    f"otel_exporter: in {value!r} only {{service}} and {{pid}} may stand in braces"
                ) from None
            return value
        raise ValueError(
            f"otel_exporter: {value!r} is not one of none, otlp, console or file:PATH "
            "(e.g. file:/var/log/cpcs/spans-{service}-{pid}.jsonl)"
        )

    @field_validator("public_url", "ingest_public_url")
    @classmethod
    def _absolute_http_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                f"{info.field_name}: {value!r} is not an http(s) base URL such as https://cpcs.example.org/ "
                "(no query, no fragment)"
            )
        return value

    @field_validator("hermes_broker_url")
    @classmethod
    def _kafka_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme != "kafka" or not parts.hostname or parts.path.strip("/") or parts.username:
            raise ValueError(
                f"hermes_broker_url: {value!r} is not a broker URL such as kafka://kafka.scimma.org/ "
                "(no topic: that is CPCS_HERMES_TOPIC; no user: that is CPCS_HERMES_USERNAME)"
            )
        return value.strip()

    @field_validator("hermes_topic")
    @classmethod
    def _kafka_topic(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        topic = value.strip()
        if len(topic) > 249 or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in topic):
            raise ValueError(
                f"hermes_topic: {value!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; "
                "e.g. hermes.test)"
            )
        return topic

    @property
    def hermes_enabled(self) -> bool:
        """Whether points are published to Hermes: a topic and a complete hop credential."""
        return bool(self.hermes_topic and self.hermes_username and self.hermes_password)

    @property
    def public_base_url(self) -> str:
        """The base of every absolute link CPCS gives out, ending with ``/``."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    @property
    def upload_url(self) -> str:
        """Where the upload page posts: ingest's public URL, or the page's own origin (one host)."""
        if self.ingest_public_url:
            return self.ingest_public_url.rstrip("/") + "/api/v1/uploads"
        return "/api/v1/uploads"

    @property
    def upload_origins(self) -> tuple[str, ...]:
        """Origins other than the page's own that the pages send uploads to (for their CSP)."""
        return (origin_of(self.ingest_public_url),) if self.ingest_public_url else ()

    @property
    def write_origins(self) -> tuple[str, ...]:
        """Origins allowed to write from a browser: ``cors_origins`` and our own pages' (``public_url``)."""
        own = (origin_of(self.public_url),) if self.public_url else ()
        return tuple(dict.fromkeys((*self.cors_origin_list, *own)))

    @property
    def trusted_proxy_list(self) -> tuple[str, ...]:
        return tuple(e.strip() for e in self.trusted_proxies.split(",") if e.strip())

    @property
    def embedded(self) -> bool:
        return self.broker_url is None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL, as a browser names its origin."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return f"{scheme}://{host}{port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
