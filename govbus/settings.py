"""Settings, read once from ``GOVBUS_*`` environment variables and an optional ``govbus.env`` file.

One object holds everything a command or processor needs to reach the bus, so that a
container, a developer's shell and the test suite configure it the same way.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from govbus.errors import GovbusError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_KEY_SECRET = "govbus-development-key-secret"  # public: it is in this file
MINIMUM_KEY_SECRET = 16


def _packaged_catalog() -> Path:
    """The catalog folder shipped with the code: topics/ of a checkout, govbus/topics of a wheel."""
    spec = importlib.util.find_spec("govbus.topics")
    return Path(spec.origin).parent if spec and spec.origin else PROJECT_ROOT / "topics"


class Settings(BaseSettings):
    """Where the bus is and where this machine keeps its files."""

    model_config = SettingsConfigDict(
        env_prefix="GOVBUS_", env_file="govbus.env", env_file_encoding="utf-8", extra="ignore"
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap address(es), comma separated."
    )
    home: Path = Field(
        Path.home() / ".govbus",
        description="Where govbus keeps the Kafka jar cache, the local broker's data and logs.",
    )
    catalog_dir: Path = Field(
        default_factory=_packaged_catalog, description="The folder holding the topic catalog's YAML files."
    )
    broker_heap: str = Field("512m", description="JVM heap of the local broker (-Xmx and -Xms).")
    broker_port: int = Field(9092, description="Client port of the local broker.")
    controller_port: int = Field(9093, description="KRaft controller port of the local broker.")
    client_id: str = Field("govbus", description="Client id prefix sent to the broker.")
    processor_host: str = Field("127.0.0.1", description="Address a processor worker's /health and /metrics bind to "
                                                         "(0.0.0.0 in a container, so that Prometheus can scrape it).")
    processor_port: int = Field(6066, description="Health and metrics port of a processor worker (127.0.0.1).")
    processor_session_timeout: float = Field(
        45.0, ge=6, le=300,
        description="Seconds without a heartbeat after which a processor worker counts as dead and its partitions "
                    "move to the others (Kafka's default; lower fails over sooner, but a worker paused that long, "
                    "e.g. by a loaded host, then loses its partitions for nothing).")
    freshness_interval: float = Field(10.0, gt=0, description="Seconds between the freshness processor's reports to metrics.freshness.")
    state_dir: Path | None = Field(
        None, description="Local folder where a processor keeps the state partitions it owns on disk (a cache, rebuilt "
                          "from the state topic on every assignment); each process makes its own subfolder in it and "
                          "removes it on exit. Default: the system's temporary folder.")
    topic_prefix: str = Field("", description="Namespace before every topic name (e.g. per environment).")
    environment: Literal["development", "production"] = Field(
        "development",
        description="What this bus is: `development` (the local broker, the demo, the tests) accepts the "
                    "development key secret; `production` (the image's default) refuses to start with it.")
    key_secret: str = Field(
        DEVELOPMENT_KEY_SECRET, validate_default=True,
        description="Secret of the keyed pseudonyms used as Kafka keys; set one per deployment, once.",
    )

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_PLAINTEXT",
        description="How clients reach the broker: SASL/SCRAM (the default), SASL over TLS, or PLAINTEXT for a "
                    "development broker started with --plaintext.",
    )
    sasl_username: str = Field("admin", description="The principal this process logs in as.")
    sasl_password: str | None = Field(
        None, description="Its password; by default read from <home>/credentials/<principal>.json.")
    ssl_cafile: Path | None = Field(None, description="CA certificate to verify the broker with (SASL_SSL); "
                                                      "default <home>/tls/ca.pem.")
    console_host: str = Field("127.0.0.1", description="Address `govbus console` binds; any but loopback asks for a login.")
    console_port: int = Field(8086, description="Port of `govbus console`.")
    console_username: str = Field("governance", description="The name of the console's login (HTTP Basic).")
    console_password: str | None = Field(None, description="The password of the console's login; required when the "
                                                          "console is bound beyond loopback or run with --login.")

    @field_validator("key_secret")
    @classmethod
    def _no_development_secret_in_production(cls, value: str, info: ValidationInfo) -> str:
        """Anyone can read the development secret here, and with it turn every Kafka key back into
        the identity number it hides (the space of ids is small enough to try them all)."""
        if info.data.get("environment", "development") != "development":
            if value == DEVELOPMENT_KEY_SECRET:
                raise ValueError(
                    f"GOVBUS_ENVIRONMENT={info.data['environment']} refuses the development key secret: set "
                    "GOVBUS_KEY_SECRET to this deployment's own secret (once, e.g. `openssl rand -base64 32`; "
                    "changing it later re-keys every entity), or GOVBUS_ENVIRONMENT=development for a local bus")
            if len(value) < MINIMUM_KEY_SECRET:
                raise ValueError(f"GOVBUS_KEY_SECRET is {len(value)} characters; a production key secret needs at "
                                 f"least {MINIMUM_KEY_SECRET} (e.g. `openssl rand -base64 32`)")
        return value

    @property
    def secured(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    def logged_in_as(self, username: str, password: str) -> Settings:
        """These settings for another principal (a department, the processors …)."""
        if not self.secured:
            return self
        return self.model_copy(update={"sasl_username": username, "sasl_password": password})

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own ``Settings`` instead. A bad value is
    one clear error naming the variable, not a traceback."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"GOVBUS_{_variable(problem['loc'])}={_shown(problem)}: {problem['msg']}"
                             for problem in error.errors())
        raise GovbusError(f"bad setting: {problems}") from None


def _variable(location: tuple) -> str:
    return "_".join(map(str, location)).upper()


def _shown(problem: dict) -> str:
    """The value given, except a secret's."""
    if _variable(problem["loc"]) in {"KEY_SECRET", "SASL_PASSWORD", "CONSOLE_PASSWORD"}:
        return "…"
    return repr(problem.get("input"))
