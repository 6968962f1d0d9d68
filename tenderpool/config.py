"""The one settings loader.

``config/default.toml`` → the TOML file named by ``TENDERPOOL_CONFIG`` →
``TENDERPOOL_*`` environment variables → explicit overrides (tests). The result
is validated once, at start-up, into a frozen :class:`Settings`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenderpool.resources import resource_dir

ENV_PREFIX = "TENDERPOOL_"
ENVIRONMENTS = ("development", "production", "test")
DEV_SECRET_KEYS = frozenset({"dev-secret-key-not-for-production", "test-secret-key", ""})
MAIL_SECURITY = ("none", "starttls", "tls")
_DEPARTMENT_RE = re.compile(r"^(?:0[1-9]|[1-8]\d|9[0-5]|2A|2B|97[1-6])$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Chamber:
    slug: str
    name: str
    departments: tuple[str, ...]
    email: str


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    security: str
    username: str
    password: str
    sender: str
    outbox_dir: str
    timeout_seconds: int


@dataclass(frozen=True)
class SecuritySettings:
    login_max_failures: int
    login_window_minutes: int
    password_min_length: int
    reset_link_minutes: int
    invitation_days: int
    remember_days: int
    cookie_secure: bool


@dataclass(frozen=True)
class SourceSettings:
    name: str
    enabled: bool
    base_url: str
    page_size: int
    options: Mapping[str, Any]  # source-specific keys (departments, nuts, fetch_xml…)


@dataclass(frozen=True)
class ScraperSettings:
    user_agent: str
    connect_timeout_seconds: float
    read_timeout_seconds: float
    max_tries: int
    politeness_delay_seconds: float
    overlap_days: int
    initial_days: int
    sources: Mapping[str, SourceSettings]


@dataclass(frozen=True)
class JobSettings:
    """When one scheduled job runs: a crontab line (in ``app.timezone``) or a fixed interval."""

    name: str
    enabled: bool
    cron: str | None
    interval_seconds: int | None


@dataclass(frozen=True)
class SchedulerSettings:
    standby_retry_seconds: float  # a standby tries to become active this often
    poll_seconds: float  # the active one checks its lock and "run now" requests this often
    misfire_grace_seconds: int
    retry_seconds: int  # first retry of a failed run; doubles at each failure
    max_attempts: int
    threads: int


@dataclass(frozen=True)
class OpsSettings:
    heartbeat_max_age_seconds: int  # /healthz: 503 past this (0: not checked)
    source_max_age_hours: int  # /healthz: 503 when an enabled source had no complete run for this long
    recompress_payloads_after_days: int  # 0: never
    job_runs_days: int
    document_reminder_days: tuple[int, ...]  # descending, e.g. (30, 7, 0)


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    secret_key: str
    instance_path: Path
    base_url: str
    timezone: str
    proxy_fix_hops: int
    log_format: str
    log_level: str
    server_host: str
    server_port: int
    server_workers: int
    security: SecuritySettings
    mail: MailSettings
    demo_load_on_run: bool
    demo_password: str
    chambers: tuple[Chamber, ...]
    scrapers: ScraperSettings
    raw: Mapping[str, Any]  # the merged tree, for sections read by later modules
    jobs: Mapping[str, JobSettings] = field(default_factory=dict)
    scheduler: SchedulerSettings = field(default_factory=lambda: SchedulerSettings(15.0, 5.0, 600, 60, 3, 4))
    ops: OpsSettings = field(default_factory=lambda: OpsSettings(300, 26, 30, 90, (30, 7, 0)))
    demo_live_sources: bool = False

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def chamber(self, slug: str) -> Chamber:
        for chamber in self.chambers:
            if chamber.slug == slug:
                return chamber
        raise KeyError(slug)

    def chamber_for_department(self, department: str) -> Chamber | None:
        for chamber in self.chambers:
            if department in chamber.departments:
                return chamber
        return None

    @property
    def chamber_departments(self) -> tuple[str, ...]:
        return tuple(d for c in self.chambers for d in c.departments)


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str, *, allow_new: bool) -> None:
    job_table = where.startswith("jobs.") and where.count(".") == 2
    if job_table:
        # A job runs on a cron line *or* an interval: a later layer giving one replaces the other.
        for one, other in (("cron", "interval_seconds"), ("interval_seconds", "cron")):
            if one in override and other not in override:
                base.pop(other, None)
    for key, value in override.items():
        if key not in base:
            # New chambers and new job tables may be added; anything else is a typo.
            known = where.startswith("chambers") or where == "jobs." or (job_table and key in _JOB_KEYS)
            if not allow_new and not known:
                raise ConfigError(f"unknown setting '{where}{key}' (see config/default.toml for the list)")
            base[key] = value
        elif isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting '{where}{key}' must be a table")
            _merge(base[key], value, f"{where}{key}.", allow_new=allow_new)
        else:
            base[key] = value


def _coerce(name: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, list):
            stripped = text.strip()
            if stripped.startswith("["):
                value = json.loads(stripped)
                if not isinstance(value, list):
                    raise ValueError(text)
                return value
            return [part.strip() for part in stripped.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"environment variable {name}={text!r} is not a valid {type(default).__name__}"
        ) from exc
    return text


def _apply_env(tree: dict[str, Any], environ: Mapping[str, str], path: tuple[str, ...] = ()) -> None:
    for key, value in tree.items():
        here = (*path, key)
        if isinstance(value, dict):
            _apply_env(value, environ, here)
            continue
        name = ENV_PREFIX + "_".join(part.upper().replace("-", "_") for part in here)
        if name in environ:
            tree[key] = _coerce(name, environ[name], value)


def load_raw(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the layers into one plain tree (not yet validated)."""
    environ = os.environ if environ is None else environ
    with (resource_dir("config") / "default.toml").open("rb") as fh:
        tree = tomllib.load(fh)
    extra = environ.get(ENV_PREFIX + "CONFIG")
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise ConfigError(f"TENDERPOOL_CONFIG names {path}, which is not a readable file")
        try:
            with path.open("rb") as fh:
                _merge(tree, tomllib.load(fh), "", allow_new=False)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    _apply_env(tree, environ)
    if overrides:
        _merge(tree, overrides, "", allow_new=True)
    return tree


def _need(condition: bool, message: str, errors: list[str]) -> None:
    if not condition:
        errors.append(message)


def validate(tree: Mapping[str, Any]) -> Settings:
    """Check every value and build :class:`Settings`; raise :class:`ConfigError` listing all problems."""
    errors: list[str] = []
    env = str(tree.get("env", ""))
    _need(env in ENVIRONMENTS, f"env must be one of {', '.join(ENVIRONMENTS)} (got {env!r})", errors)
    app, server, security, mail, demo = (tree[s] for s in ("app", "server", "security", "mail", "demo"))
    instance_path = Path(str(app["instance_path"])).expanduser()
    database_url = str(tree.get("database_url") or "")
    if not database_url:
        database_url = f"sqlite:///{(instance_path / 'tenderpool.db').resolve()}"
    _need(
        database_url.startswith(("sqlite", "postgresql")),
        f"database_url must be a sqlite:/// or postgresql+psycopg:// URL (got {database_url!r})",
        errors,
    )
    secret_key = str(tree.get("secret_key") or "")
    if env == "production" and (secret_key in DEV_SECRET_KEYS or len(secret_key) < 32):
        errors.append(
            "in production the secret key must be set to a long random value: set TENDERPOOL_SECRET_KEY, "
            'for example to the output of: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    try:
        ZoneInfo(str(app["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"app.timezone {app['timezone']!r} is not a known time zone")
    _need(
        str(app["base_url"]).startswith(("http://", "https://")),
        "app.base_url must start with http(s)://",
        errors,
    )
    _need(
        app["log_format"] in ("auto", "text", "json"),
        "app.log_format must be auto, text or json",
        errors,
    )
    _need(
        app["log_level"] in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "app.log_level must be DEBUG, INFO, WARNING or ERROR",
        errors,
    )
    _need(
        isinstance(app["proxy_fix_hops"], int) and app["proxy_fix_hops"] >= 0,
        "app.proxy_fix_hops >= 0",
        errors,
    )
    _need(1 <= int(server["port"]) <= 65535, "server.port must be between 1 and 65535", errors)
    _need(int(server["workers"]) >= 1, "server.workers must be at least 1", errors)
    for key in ("login_max_failures", "login_window_minutes", "reset_link_minutes", "invitation_days"):
        _need(int(security[key]) >= 1, f"security.{key} must be at least 1", errors)
    _need(
        int(security["password_min_length"]) >= 8, "security.password_min_length must be at least 8", errors
    )
    _need(
        mail["security"] in MAIL_SECURITY, f"mail.security must be one of {', '.join(MAIL_SECURITY)}", errors
    )
    _need(1 <= int(mail["port"]) <= 65535, "mail.port must be between 1 and 65535", errors)
    _need("@" in str(mail["sender"]), "mail.sender must be an email address", errors)

    chambers: list[Chamber] = []
    seen_departments: dict[str, str] = {}
    for slug, table in dict(tree.get("chambers") or {}).items():
        if not isinstance(table, Mapping):
            errors.append(f"chambers.{slug} must be a table")
            continue
        _need(
            bool(_SLUG_RE.match(slug)), f"chamber key {slug!r} must be lower-case letters and digits", errors
        )
        departments = tuple(str(d).strip().upper() for d in table.get("departments", []))
        _need(bool(table.get("name")), f"chambers.{slug}.name is required", errors)
        _need(bool(departments), f"chambers.{slug}.departments must list at least one département", errors)
        for dep in departments:
            _need(
                bool(_DEPARTMENT_RE.match(dep)), f"chambers.{slug}: {dep!r} is not a département code", errors
            )
            if dep in seen_departments:
                errors.append(f"département {dep} belongs to both {seen_departments[dep]} and {slug}")
            seen_departments[dep] = slug
        chambers.append(Chamber(slug, str(table.get("name", "")), departments, str(table.get("email", ""))))
    _need(bool(chambers), "at least one chamber must be configured ([chambers.<key>])", errors)
    scrapers = _scraper_settings(tree.get("scrapers") or {}, errors)
    jobs = _job_settings(tree.get("jobs") or {}, str(app["timezone"]), errors)
    scheduler = _scheduler_settings(tree.get("scheduler") or {}, errors)
    ops = _ops_settings(
        tree.get("health") or {}, tree.get("retention") or {}, tree.get("reminders") or {}, errors
    )
    if errors:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(errors))

    return Settings(
        env=env,
        database_url=database_url,
        secret_key=secret_key,
        instance_path=instance_path,
        base_url=str(app["base_url"]).rstrip("/"),
        timezone=str(app["timezone"]),
        proxy_fix_hops=int(app["proxy_fix_hops"]),
        # "auto": one JSON object a line in production, readable lines elsewhere.
        log_format=(
            str(app["log_format"])
            if app["log_format"] != "auto"
            else ("json" if env == "production" else "text")
        ),
        log_level=str(app["log_level"]),
        server_host=str(server["host"]),
        server_port=int(server["port"]),
        server_workers=int(server["workers"]),
        security=SecuritySettings(
            login_max_failures=int(security["login_max_failures"]),
            login_window_minutes=int(security["login_window_minutes"]),
            password_min_length=int(security["password_min_length"]),
            reset_link_minutes=int(security["reset_link_minutes"]),
            invitation_days=int(security["invitation_days"]),
            remember_days=int(security["remember_days"]),
            cookie_secure=bool(security["cookie_secure"]) or env == "production",
        ),
        mail=MailSettings(
            host=str(mail["host"]),
            port=int(mail["port"]),
            security=str(mail["security"]),
            username=str(mail["username"]),
            password=str(mail["password"]),
            sender=str(mail["sender"]),
            outbox_dir=str(mail["outbox_dir"]),
            timeout_seconds=int(mail["timeout_seconds"]),
        ),
        demo_load_on_run=bool(demo["load_on_run"]),
        demo_password=str(demo["password"]),
        chambers=tuple(chambers),
        scrapers=scrapers,
        raw=tree,
        jobs=jobs,
        scheduler=scheduler,
        ops=ops,
        demo_live_sources=bool(demo.get("live_sources", False)),
    )


_JOB_KEYS = frozenset({"enabled", "cron", "interval_seconds"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _job_settings(table: Mapping[str, Any], timezone: str, errors: list[str]) -> dict[str, JobSettings]:
    """``[jobs.<name>]`` tables; whether ``<name>`` is a known job is checked by tenderpool.scheduler."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        timezone = "UTC"  # reported as app.timezone; still check the crontab lines themselves
    jobs: dict[str, JobSettings] = {}
    for name, job in table.items():
        where = f"jobs.{name}"
        if not isinstance(job, Mapping):
            errors.append(f"{where} must be a table")
            continue
        unknown = sorted(set(job) - _JOB_KEYS)
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {', '.join(unknown)} (allowed: enabled, cron, interval_seconds)"
            )
        cron, interval = job.get("cron"), job.get("interval_seconds")
        if (cron is None) == (interval is None):
            errors.append(f"{where} needs exactly one of cron or interval_seconds")
        if cron is not None:
            try:
                CronTrigger.from_crontab(str(cron), timezone=timezone)
            except (ValueError, TypeError) as exc:
                errors.append(
                    f"{where}.cron {cron!r} is not a crontab line (minute hour day month weekday): {exc}"
                )
        if interval is not None and not (_is_int(interval) and interval >= 1):
            errors.append(f"{where}.interval_seconds must be a whole number of seconds, at least 1")
        enabled = job.get("enabled", True)
        if not isinstance(enabled, bool):
            errors.append(f"{where}.enabled must be true or false")
        jobs[name] = JobSettings(
            name=name,
            enabled=bool(enabled),
            cron=None if cron is None else str(cron),
            interval_seconds=interval
            if isinstance(interval, int) and not isinstance(interval, bool)
            else None,
        )
    return jobs


def _positive(
    table: Mapping[str, Any], key: str, where: str, errors: list[str], *, minimum: float = 0
) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        errors.append(f"{where}.{key} must be a number of at least {minimum} (got {value!r})")
        return minimum
    return float(value)


def _scheduler_settings(table: Mapping[str, Any], errors: list[str]) -> SchedulerSettings:
    where = "scheduler"
    return SchedulerSettings(
        standby_retry_seconds=_positive(table, "standby_retry_seconds", where, errors, minimum=0.1),
        poll_seconds=_positive(table, "poll_seconds", where, errors, minimum=0.1),
        misfire_grace_seconds=int(_positive(table, "misfire_grace_seconds", where, errors, minimum=1)),
        retry_seconds=int(_positive(table, "retry_seconds", where, errors, minimum=1)),
        max_attempts=int(_positive(table, "max_attempts", where, errors, minimum=1)),
        threads=int(_positive(table, "threads", where, errors, minimum=1)),
    )


def _ops_settings(
    health: Mapping[str, Any], retention: Mapping[str, Any], reminders: Mapping[str, Any], errors: list[str]
) -> OpsSettings:
    days: list[int] = []
    for value in reminders.get("document_days", []):
        try:
            day = int(value)
        except (TypeError, ValueError):
            errors.append(f"reminders.document_days: {value!r} is not a whole number of days")
            continue
        if day < 0:
            errors.append("reminders.document_days must be 0 or more days")
        days.append(day)
    return OpsSettings(
        heartbeat_max_age_seconds=int(_positive(health, "heartbeat_max_age_seconds", "health", errors)),
        source_max_age_hours=int(_positive(health, "source_max_age_hours", "health", errors)),
        recompress_payloads_after_days=int(
            _positive(retention, "recompress_payloads_after_days", "retention", errors)
        ),
        job_runs_days=int(_positive(retention, "job_runs_days", "retention", errors, minimum=1)),
        document_reminder_days=tuple(sorted(set(days), reverse=True)),
    )


def _scraper_settings(table: Mapping[str, Any], errors: list[str]) -> ScraperSettings:
    common = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    _need(
        len(str(common.get("user_agent", "")).strip()) > 10,
        "scrapers.user_agent must name the service",
        errors,
    )
    for key in ("connect_timeout_seconds", "read_timeout_seconds"):
        _need(float(common.get(key, 0)) > 0, f"scrapers.{key} must be positive", errors)
    _need(int(common.get("max_tries", 0)) >= 1, "scrapers.max_tries must be at least 1", errors)
    _need(
        float(common.get("politeness_delay_seconds", 0)) >= 0,
        "scrapers.politeness_delay_seconds >= 0",
        errors,
    )
    _need(int(common.get("overlap_days", -1)) >= 0, "scrapers.overlap_days must be >= 0", errors)
    _need(int(common.get("initial_days", 0)) >= 1, "scrapers.initial_days must be at least 1", errors)
    sources: dict[str, SourceSettings] = {}
    for name, source in table.items():
        if not isinstance(source, Mapping):
            continue
        page_size = int(source.get("page_size", 100))
        largest = 100 if name == "boamp" else 250  # the APIs' own limits (ODS: 100, TED: 250)
        _need(1 <= page_size <= largest, f"scrapers.{name}.page_size must be between 1 and {largest}", errors)
        base_url = str(source.get("base_url", ""))
        _need(base_url.startswith(("http://", "https://")), f"scrapers.{name}.base_url must be a URL", errors)
        options = {k: v for k, v in source.items() if k not in ("enabled", "base_url", "page_size")}
        sources[name] = SourceSettings(name, bool(source.get("enabled", True)), base_url, page_size, options)
    return ScraperSettings(
        user_agent=str(common.get("user_agent", "")),
        connect_timeout_seconds=float(common.get("connect_timeout_seconds", 10)),
        read_timeout_seconds=float(common.get("read_timeout_seconds", 60)),
        max_tries=int(common.get("max_tries", 5)),
        politeness_delay_seconds=float(common.get("politeness_delay_seconds", 1.0)),
        overlap_days=int(common.get("overlap_days", 3)),
        initial_days=int(common.get("initial_days", 7)),
        sources=sources,
    )


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Load and validate the settings (see the module docstring for the layers)."""
    return validate(load_raw(environ, overrides))
