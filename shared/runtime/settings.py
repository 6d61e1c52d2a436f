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
    relay_interval_s: float = Field(default=0.05, gt=0)
    # crisis mode (DOMAIN.md): volunteers aged 70+ or declaring a health risk apply to remote missions only
    crisis_mode: bool = True
    max_pending_applications: int = Field(default=5, ge=1)
    # keys the e-mail index (HMAC) so that a leaked read model does not list e-mails; set it in production
    personal_data_pepper: str = "civique-development-pepper"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
