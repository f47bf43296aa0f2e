"""The one settings object (DESIGN.md §4).

Sources, strongest first: environment (`VOICEBOT_` prefix, `__` between
section and field), then the TOML file named by `VOICEBOT_CONFIG` (default
`./voicebot.toml` when it exists), then the defaults below, which are the
embedded quick-start configuration: peer mode on loopback, SQLite under
`./data`, HTTP on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ivr import Categories, Category, MenuConfig, categories_by_code
from voicebot.phone_numbers import check_template, default_patterns, region_known
from voicebot.working_hours import (
    HOURS_FORM,
    HoursError,
    holiday_country_known,
    parse_working_hours,
)
from webhooks.signing import decode_secret

CONFIG_ENV = "VOICEBOT_CONFIG"
DEFAULT_CONFIG_FILE = Path("voicebot.toml")


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo is never ignored."""

    model_config = ConfigDict(extra="forbid")


class SipSettings(Section):
    mode: Literal["register", "peer"] = "peer"
    server: str | None = None
    port: int = Field(5060, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(5062, ge=0, le=65535)
    public_host: str | None = None
    rtp_port_min: int = Field(20000, ge=1024, le=65535)
    rtp_port_max: int = Field(20999, ge=1024, le=65535)
    register_expires: int = Field(300, ge=30, le=86400)
    allowed_peers: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    user_agent: str = "voicebot"
    # A request from an address outside allowed_peers: answered 403 (to the
    # packet's source only, rate-limited) or dropped without a word.
    unknown_peer: Literal["403", "drop"] = "403"
    # Calls at once (ringing, answered or waiting for the ACK); beyond it new
    # INVITEs get 503 + Retry-After. Default: one per even port of the RTP range.
    max_calls: int | None = Field(None, ge=1, le=100_000)
    # New INVITEs per second from one source IP, and how many may come at once.
    invite_rate_per_source: float = Field(10.0, gt=0, le=100_000)
    invite_burst_per_source: int = Field(20, ge=1, le=100_000)

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR (expected e.g. 10.0.0.5 or 10.0.0.0/24)"
                ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SipSettings:
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError(
                f"rtp_port_min ({self.rtp_port_min}) is above rtp_port_max ({self.rtp_port_max});"
                " expected rtp_port_min <= rtp_port_max"
            )
        if self.rtp_port_max - self.rtp_port_min < 1:
            raise ValueError("rtp port range must hold at least 2 ports (RTP uses even ports)")
        if self.max_calls is not None and self.max_calls > self.rtp_ports:
            raise ValueError(
                f"max_calls ({self.max_calls}) is above the {self.rtp_ports} calls the RTP range"
                f" {self.rtp_port_min}-{self.rtp_port_max} can carry (one even port per call);"
                " expected max_calls <= (rtp_port_max - rtp_port_min + 1) / 2, or widen the range"
            )
        if self.mode == "register":
            missing = [n for n in ("server", "username") if not getattr(self, n)]
            if missing:
                raise ValueError(
                    f"mode 'register' needs {' and '.join(missing)}"
                    " (VOICEBOT_SIP__SERVER=pbx.example.com, VOICEBOT_SIP__USERNAME=201)"
                )
        return self

    @property
    def rtp_ports(self) -> int:
        """Even ports in the RTP range: one per call (RFC 3550 §11, RTCP on the odd one)."""
        first = self.rtp_port_min + self.rtp_port_min % 2
        return max(0, (self.rtp_port_max - first) // 2 + 1)

    @property
    def call_limit(self) -> int:
        """`max_calls`, or by default as many calls as the RTP range has ports."""
        return self.max_calls if self.max_calls is not None else self.rtp_ports

    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.allowed_peers]


class IvrSettings(Section):
    language: Literal["ru", "uk", "en"] = "en"
    ask_category: bool = True
    ask_value: bool = True
    confirm: bool = True
    # `*` is the decimal point and the restart key, and the prompts say "press
    # hash", so `#` is the only terminator that keeps the menu coherent.
    terminator: Literal["#"] = "#"
    first_digit_timeout_s: float = Field(8.0, gt=0, le=120)
    digit_timeout_s: float = Field(4.0, gt=0, le=60)
    max_attempts: int = Field(3, ge=1, le=10)
    prompts_dir: Path | None = None
    # On SIGTERM, calls in the menu get this long to finish before the bot
    # hangs up on them (saving what was keyed as incomplete / shutdown).
    shutdown_grace_s: float = Field(20.0, ge=0, le=600)
    # Keys sent as tones in the audio (phones, ATAs and trunks without RFC 4733).
    # auto: detect them until the call's first RFC 4733 key (a call whose SDP
    # has no telephone-event never sends one); on: always; off: never.
    inband_dtmf: Literal["auto", "on", "off"] = "auto"

    @model_validator(mode="after")
    def _asks_something(self) -> IvrSettings:
        if not (self.ask_category or self.ask_value):
            raise ValueError("at least one of ask_category and ask_value must be true")
        return self


class StorageSettings(Section):
    database: Path = Path("data/voicebot.db")
    # How long a call's save may retry a locked / failing database (the
    # manager hears a hold tone) before the entry goes to the spool instead.
    write_deadline_s: float = Field(5.0, gt=0, le=60)
    # The spool (JSON lines, fsync'd) lives here; default: next to the database.
    spool_dir: Path | None = None
    # How often spooled entries are replayed into the journal while running.
    spool_replay_interval_s: float = Field(10.0, gt=0, le=3600)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: More API worker processes than this only take memory (each holds ~50 MB).
MAX_API_WORKERS = 16


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_token: SecretStr | None = None
    # Requests worked on at once beside the calls' media clock, and how many
    # more may wait; beyond both a request gets 503 + Retry-After at once.
    # These are the light lane's (PBX events, single calls, the catalogue).
    api_concurrency: int = Field(2, ge=1, le=64)
    api_queue: int = Field(256, ge=0, le=10_000)
    # Processes the heavy reads (calls list, reports) are computed in, off the
    # media clock's loop; also how many of them run at once. 0: compute them
    # in the bot's own process, `api_concurrency` at a time.
    api_workers: int = 2

    @field_validator("api_workers")
    @classmethod
    def _workers_in_range(cls, value: int) -> int:
        if not 0 <= value <= MAX_API_WORKERS:
            raise ValueError(
                f"expected 0 (compute reports in the bot's own process) to {MAX_API_WORKERS}"
                " worker processes; about one per spare CPU core"
            )
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpSettings:
        # The API lists calls, numbers and webhook deliveries and edits the
        # catalogue: reachable from the network, it must ask for a token.
        if not is_loopback(self.host) and not (
            self.api_token and self.api_token.get_secret_value()
        ):
            raise ValueError(
                f"api_token: must be set when http.host ({self.host}) is not loopback;"
                " expected a long random string (e.g. from `openssl rand -hex 32`),"
                " or http.host = 127.0.0.1"
            )
        return self


#: Standard Webhooks: a symmetric signing secret is random, at least 24 bytes
#: (192 bits) and at most 64 (512 bits), serialized as `whsec_` + base64.
WEBHOOK_SECRET_MIN_BYTES = 24
WEBHOOK_SECRET_MAX_BYTES = 64
WEBHOOK_SECRET_FORM = (
    "expected whsec_ + base64 of 24-64 random bytes (make one with:"
    " python3 -c 'import base64,os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())')"
)


def check_webhook_secret(secret: str) -> None:
    """Raises ValueError, never quoting the secret, unless it is a usable
    Standard Webhooks secret."""
    try:
        key = decode_secret(secret)
    except ValueError as error:
        raise ValueError(f"{error}; {WEBHOOK_SECRET_FORM}") from None
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(f"the key is {len(key)} bytes; {WEBHOOK_SECRET_FORM}")


class WebhookEndpointSettings(Section):
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | list[SecretStr]
    events: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr | list[SecretStr]) -> SecretStr | list[SecretStr]:
        secrets = value if isinstance(value, list) else [value]
        if not secrets:
            raise ValueError(f"at least one secret is needed; {WEBHOOK_SECRET_FORM}")
        for secret in secrets:
            check_webhook_secret(secret.get_secret_value())
        return value

    def secrets(self) -> list[str]:
        items = self.secret if isinstance(self.secret, list) else [self.secret]
        return [s.get_secret_value() for s in items]


class WebhookSettings(Section):
    endpoints: list[WebhookEndpointSettings] = Field(default_factory=list)
    timeout_s: float = Field(15.0, gt=0, le=120)
    max_attempts: int = Field(10, ge=1, le=10)
    concurrency_per_endpoint: int = Field(4, ge=1, le=64)
    retention_days: float = Field(7.0, gt=0)
    # Delays before each attempt, in seconds; default is the Standard Webhooks
    # schedule (0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), cut
    # to max_attempts. Set it to retry faster or longer than that.
    retry_schedule_s: list[float] | None = Field(None, min_length=1, max_length=50)
    # How often the outbox is looked at for rows enqueued by other processes
    # (the CLI's replay); our own calls wake the dispatcher at once.
    poll_interval_s: float = Field(1.0, gt=0, le=60)

    @field_validator("retry_schedule_s")
    @classmethod
    def _non_negative(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(delay < 0 for delay in value):
            raise ValueError("delays must be >= 0 seconds, e.g. [0, 5, 300]")
        return value


def _default_working_hours() -> dict[str, str | list[str]]:
    return {day: "09:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}


class CallbackSettings(Section):
    """Automatic callbacks to missed callers (issue 9; docs in README.md)."""

    enabled: bool = False
    order: Literal["manager_first", "client_first"] = "manager_first"
    # Extensions (or a ring group) to ring, in order or all at once.
    targets: list[str] = Field(default_factory=list, max_length=50)
    ring_strategy: Literal["sequential", "all"] = "sequential"
    ring_timeout_s: float = Field(25.0, gt=0, le=300)
    transfer: Literal["refer", "bridge"] = "refer"
    # Per weekday, in `timezone`: {mon = "09:00-18:00", sat = ["10:00-13:00"]}.
    working_hours: dict[str, str | list[str]] = Field(default_factory=_default_working_hours)
    timezone: str = "UTC"
    # ISO 3166 code for the `holidays` package (e.g. UA); None: no public holidays.
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closed_dates: list[date] = Field(default_factory=list)
    first_delay_s: float = Field(60.0, ge=0, le=7 * 86400)
    max_attempts: int = Field(3, ge=1, le=50)
    retry_interval_s: float = Field(600.0, gt=0, le=7 * 86400)
    # A PBX event whose ring lasted less than this is not a missed call worth a callback.
    min_ring_s: float = Field(5.0, ge=0, le=600)
    # Region for numbers written without +<country> (phonenumbers; e.g. UA).
    default_region: str | None = None
    # Regexes a number must match whole (E.164, or verbatim for an internal
    # number) to ever be dialled. Default: the default region's country only.
    allowed_number_patterns: list[str] | None = None
    dial_template: str = "{e164}"
    max_calls_per_number_per_day: int = Field(3, ge=1, le=100)
    max_concurrent_calls: int = Field(2, ge=1, le=1000)
    # Request-URI users that mark an INVITE as a missed call, like X-Call-Reason: missed.
    missed_uri_users: list[str] = Field(default_factory=lambda: ["missed"])
    # A missed call over SIP: answer and say "we will call you back", or 480 unanswered.
    on_missed_call: Literal["answer", "refuse"] = "answer"
    # How long a claimed job is the claimer's before another scheduler may
    # take it back; renewed while the attempt runs.
    lease_s: float = Field(60.0, ge=5, le=3600)

    @field_validator("working_hours", mode="before")
    @classmethod
    def _hours(cls, value: object) -> object:
        try:
            parse_working_hours(value)
        except HoursError as exc:
            raise ValueError(f"{exc} (expected {HOURS_FORM})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("holidays_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not holiday_country_known(value):
            raise ValueError(
                f"{value!r} is not a country the holidays package knows"
                " (expected an ISO 3166 code, e.g. UA, PL, DE)"
            )
        return value.upper() if value else None

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not region_known(value):
            raise ValueError(f"{value!r} is not a region (expected an ISO 3166 code, e.g. UA)")
        return value.upper() if value else None

    @field_validator("allowed_number_patterns")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{pattern!r} is not a regular expression ({exc});"
                    " expected e.g. '^\\+380[0-9]{9}$'"
                ) from None
        return value

    @field_validator("dial_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @model_validator(mode="after")
    def _ready(self) -> CallbackSettings:
        if self.allowed_number_patterns is None and self.default_region is not None:
            self.allowed_number_patterns = default_patterns(self.default_region)
        if self.enabled:
            if not self.targets:
                raise ValueError(
                    "targets: empty; callbacks need extensions to ring"
                    ' (expected e.g. targets = ["201", "202"])'
                )
            if self.default_region is None and self.allowed_number_patterns is None:
                raise ValueError(
                    "default_region: needed when callbacks are enabled, to read national numbers"
                    ' and to bound whom the bot may dial (expected e.g. default_region = "UA")'
                )
        return self

    def patterns(self) -> list[str]:
        return list(self.allowed_number_patterns or [])


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (expected e.g. Europe/Kyiv or UTC)"
        ) from None
    return value


class JournalSettings(Section):
    # Call types (voicebot/journal/call_types.py): an inbound call is `unique`
    # when no inbound call from the same number started less than this before it.
    unique_window_days: float = Field(30.0, gt=0, le=3650)
    # An answered call is `target` when the talk lasted at least this long.
    target_min_talk_s: float = Field(30.0, ge=0, le=86400)
    # Reports and the dashboard count days and hours in this IANA time zone.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


def _default_categories() -> list[Category]:
    return [
        Category(code="1", name="sale", value=None),
        Category(code="2", name="asked for the address", value=Decimal(100)),
        Category(code="3", name="existing order", value=None),
        Category(code="9", name="spam", value=Decimal(0), spam=True),
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOICEBOT_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    sip: SipSettings = Field(default_factory=SipSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    # The menu's own type: Category checks each entry (keypad code, name,
    # value) and MenuConfig the whole (unique codes, ...); see menu_config().
    categories: list[Category] = Field(default_factory=_default_categories)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("categories")
    @classmethod
    def _catalogue(cls, value: list[Category]) -> list[Category]:
        categories_by_code(value)  # the menu's rule: codes are unique
        return value

    @model_validator(mode="after")
    def _menu(self) -> Settings:
        # The menu's rules are ivr's; checking them here makes a bad menu a
        # configuration error, not a crash when the first call is answered.
        try:
            self.menu_config()
        except ValueError as error:
            raise ValueError(f"ivr: {error}") from None
        return self

    def menu_config(self, categories: Categories | None = None) -> MenuConfig:
        """The post-call menu these settings describe; `categories` (the live
        catalogue from the database) replaces the configured ones."""
        s = self.ivr
        return MenuConfig(
            categories=categories
            if categories is not None
            else categories_by_code(self.categories),
            ask_category=s.ask_category,
            ask_value=s.ask_value,
            confirm=s.confirm,
            terminator=s.terminator,
            first_digit_timeout_s=s.first_digit_timeout_s,
            digit_timeout_s=s.digit_timeout_s,
            max_attempts=s.max_attempts,
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file()
        if path is None:
            return (init_settings, _EnvOverFile(settings_cls, env_settings, None))
        try:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as error:
            raise ConfigFileError(f"{path}: not valid TOML: {error}") from None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ConfigFileError(
                f"{path}: cannot read it ({reason}); expected a readable TOML file"
            ) from None
        return (init_settings, _EnvOverFile(settings_cls, env_settings, toml))


class _EnvOverFile(PydanticBaseSettingsSource):
    """The environment over the TOML file, list items included:
    `VOICEBOT_WEBHOOKS__ENDPOINTS__0__SECRET` replaces the secret of the
    file's first endpoint and keeps its url (a secret store can then hold the
    secret alone)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        env: PydanticBaseSettingsSource,
        file: PydanticBaseSettingsSource | None,
    ) -> None:
        super().__init__(settings_cls)
        self._env = env
        self._file = file

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ does the whole job

    def __call__(self) -> dict[str, Any]:
        merged = _overlay(self._file() if self._file else {}, self._env())
        assert isinstance(merged, dict)
        return merged


def _overlay(base: Any, over: Any) -> Any:
    """`over` on top of `base`; a dict keyed "0", "1"... updates a list by index."""
    if isinstance(over, dict) and over and all(str(k).isdigit() for k in over):
        if isinstance(base, list):
            items = list(base)
            for key in sorted(over, key=int):
                index = int(key)
                if index < len(items):
                    items[index] = _overlay(items[index], over[key])
                elif index == len(items):
                    items.append(_overlay(None, over[key]))
                else:
                    return over  # a gap: left for validation to name
            return items
        if base is None:
            return _overlay([], over)
    if isinstance(over, dict):
        result = dict(base) if isinstance(base, dict) else {}
        for key, value in over.items():
            result[key] = _overlay(result.get(key), value)
        return result
    return over


class ConfigFileError(Exception):
    """The file named by VOICEBOT_CONFIG is missing, unreadable or not TOML."""


def config_file() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigFileError(f"{CONFIG_ENV}={named}: no such file (expected a TOML file)")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: object) -> Settings:
    """Build settings from env + file; raises pydantic.ValidationError or ConfigFileError."""
    return Settings(**overrides)  # type: ignore[arg-type]
