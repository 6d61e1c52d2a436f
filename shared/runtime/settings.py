"""Settings of every service, from CIVIQUE_* environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field
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
    # appends of this process wake its relay at once; this is how soon another process's are noticed
    relay_interval_s: float = Field(default=0.5, gt=0)
    # off for HTTP-only replicas: this process then runs no consumer group and no scheduled job
    run_consumers: bool = True
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
    rate_limit_per_minute: int = Field(default=120, ge=1)
    sensitive_rate_limit_per_minute: int = Field(default=10, ge=1)  # sign-up, login, invitations
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
    mail_from: str = "Civique <ne-pas-repondre@civique.example>"
    public_url: str = "http://127.0.0.1:8000"  # where the links of e-mails lead
    link_secret: str | None = None  # signs unsubscribe links
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
    missions_url: str = "http://127.0.0.1:8001"
    moderation_url: str = "http://127.0.0.1:8002"
    volunteers_url: str = "http://127.0.0.1:8003"
    matching_url: str = "http://127.0.0.1:8004"
    notifications_url: str = "http://127.0.0.1:8005"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
