"""Settings of every service, from CIVIQUE_* environment variables."""

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIVIQUE_", extra="ignore")

    backend: Literal["embedded", "kafka+mongo"] = "embedded"
    data_dir: Path = Path("data")
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    mongodb_url: str = "mongodb://127.0.0.1:27027/"
    # prefix of topics, consumer groups and databases: several platforms (or test runs) on one cluster
    namespace: str = Field(default="", pattern=r"^[a-z0-9_]*$")
    partitions: int = Field(default=4, ge=1)
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_retry_backoff_s: float = Field(default=0.2, ge=0)
    # a store or bus outage is waited out (never dead-letters); the pause between tries doubles up to this
    consumer_outage_backoff_max_s: float = Field(default=5.0, gt=0)
    # readiness fails for a consumer whose partitions have a lag and that handled nothing for this long
    consumer_stuck_after_s: float = Field(default=120.0, gt=0)
    # how often the committed lag (civique_consumer_lag) and the outbox backlog are read
    lag_interval_s: float = Field(default=5.0, gt=0)
    # each check of /readyz answers within this time or reports "timeout"
    readiness_check_timeout_s: float = Field(default=0.8, gt=0)
    # on stop, the relays publish what is still pending for at most this long
    shutdown_drain_s: float = Field(default=5.0, ge=0)
    # appends of this process wake its relay at once; this is how soon another process's are noticed
    relay_interval_s: float = Field(default=0.5, gt=0)
    # off for HTTP-only replicas: this process then runs no consumer group and no scheduled job
    run_consumers: bool = True
    # one relay per event store: off in the processes beside the one that publishes (workers, ADR 0009)
    run_relays: bool = True
    # `serve` hands the consumer groups and jobs to this many worker processes beside the HTTP one (0: none),
    # run at a lower CPU priority (`worker_nice`): a drain never starves the HTTP path (ADR 0009)
    workers: int = Field(default=1, ge=0, le=64)
    worker_nice: int = Field(default=10, ge=0, le=19)
    worker: bool = False  # set by `serve` in the processes it starts
    # crisis mode (DOMAIN.md): volunteers aged 70+ or declaring a health risk apply to remote missions only
    crisis_mode: bool = True
    max_pending_applications: int = Field(default=5, ge=1)
    # keys the e-mail index (HMAC) so that a leaked read model does not list e-mails; set it in production
    personal_data_pepper: str = "civique-development-pepper"
    # gateway: secrets come from the environment in production; embedded runs draw them at start
    jwt_secret: str | None = None
    internal_token: str | None = None  # proves to a service that the gateway relays the acting user
    access_token_ttl_s: int = Field(default=900, ge=30)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    invitation_ttl_s: int = Field(default=72 * 3600, ge=60)
    password_reset_ttl_s: int = Field(default=3600, ge=60)  # a forgotten password's link lives this long
    # rate limits per replica (ADR 0004): tight per account and per e-mail, high per address (CGNAT, schools)
    rate_limit_per_minute: int = Field(default=120, ge=1)  # per signed-in account
    sensitive_rate_limit_per_minute: int = Field(default=10, ge=1)  # per e-mail: login, sign-up, registration
    ip_rate_limit_per_minute: int = Field(default=1200, ge=1)
    sensitive_ip_limit_per_minute: int = Field(default=600, ge=1)  # sign-up, login, registration, invitations
    sign_up_limit_per_second: int = Field(default=2000, ge=1)  # all addresses together: sheds load past it
    # peers whose X-Forwarded-For is believed (the load balancer's or ingress's addresses), comma-separated CIDRs
    trusted_proxies: str = ""
    # a sign-up or an application the bus has not acknowledged by then answers 503 (Retry-After)
    intake_publish_timeout_s: float = Field(default=5.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # a command accepted with a 202 and not carried out within this time is rejected as expired
    intake_key_retention_hours: int = Field(default=48, ge=1)
    # matching: thresholds of territory imbalances, idle volunteers, how far organisations look
    imbalance_volunteers_per_place: float = Field(default=35.0, gt=0)  # DOMAIN.md's 35:1 figure
    imbalance_days_without_candidates: int = Field(default=7, ge=1)
    idle_after_days: int = Field(default=14, ge=1)
    max_invitation_radius_km: float = Field(default=50.0, gt=0)
    index_refresh_s: float = Field(default=0.5, gt=0)
    territory_interval_s: float = Field(default=3600.0, gt=0)
    # notifications: without an SMTP host, e-mails stay in a local mailbox shown at /notifications/mailbox
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1, le=64)  # kept open and reused; as many e-mails leave at once
    mail_from: str = "Civique <ne-pas-repondre@civique.example>"
    public_url: str = "http://127.0.0.1:8000"  # where the links of e-mails lead
    link_secret: str | None = None  # signs unsubscribe links; the website's session cookies use a key derived from it
    mail_hourly_limit: int = Field(default=3, ge=1)  # non-transactional e-mails a person gets an hour
    mail_max_attempts: int = Field(default=8, ge=1)  # temporary SMTP failures before the dead letter
    mail_retry_base_s: float = Field(default=30.0, gt=0)
    mail_recipient_wait_s: float = Field(default=24 * 3600.0, gt=0)  # for an address still unknown (lagging topic)
    mail_unconfirmed_after_s: float = Field(default=300.0, gt=0)  # a send claimed longer ago was interrupted
    mail_send_interval_s: float = Field(default=1.0, gt=0)
    # settled e-mails leave the delivery log after this; longer than the bus keeps events to redeliver
    mail_log_retention_days: int = Field(default=30, ge=8)
    schedule_interval_s: float = Field(default=900.0, gt=0)
    reminder_hour: int = Field(default=8, ge=0, le=23)  # reminders and digests go from this hour, Paris time
    # the public website (services.web, ADR 0012): `state` shows the State's brand (the DSFR with the Marianne and
    # the bloc marque), `neutral` the DSFR's components under a neutral header, for an operator other than the State
    brand: Literal["state", "neutral"] = "state"
    gateway_url: str = "http://127.0.0.1:8000"  # the public API, when this process does not host the gateway
    # the search page's map tiles ({z}/{x}/{y}, e.g. the IGN Géoplateforme's); the page stays usable without them
    map_tiles_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    map_attribution: str = "© les contributeurs d’OpenStreetMap"
    missions_url: str = "http://127.0.0.1:8001"
    moderation_url: str = "http://127.0.0.1:8002"
    volunteers_url: str = "http://127.0.0.1:8003"
    matching_url: str = "http://127.0.0.1:8004"
    notifications_url: str = "http://127.0.0.1:8005"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    # a library's repeated log line (same logger and template) is let through at most once per this interval
    log_repeat_interval_s: float = Field(default=10.0, ge=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for network in filter(None, (n.strip() for n in value.split(","))):
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    def secret(self, name: Literal["jwt_secret", "internal_token", "link_secret"]) -> str:
        """A secret the caller cannot run without: MissingSecret names the variable to set."""
        value = getattr(self, name)
        if not value:
            raise MissingSecret(f"set CIVIQUE_{name.upper()}")
        return str(value)


class MissingSecret(RuntimeError):
    """A required secret is not set (production reads them from the environment)."""
