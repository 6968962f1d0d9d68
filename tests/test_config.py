"""The settings loader: layers, environment overrides, validation, production secret refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tenderpool.config import ConfigError, load_settings


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.env == "development"
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith(
        "instance/tenderpool.db"
    )
    assert [c.slug for c in settings.chambers] == ["cci77", "cci91"]
    assert settings.chamber_for_department("77").name == "CCI Seine-et-Marne"  # type: ignore[union-attr]
    assert settings.chamber_for_department("91").name == "CCI Essonne"  # type: ignore[union-attr]
    assert settings.chamber_for_department("75") is None
    assert settings.security.login_max_failures == 5 and settings.security.login_window_minutes == 15


def test_environment_overrides_every_layer(tmp_path: Path) -> None:
    extra = tmp_path / "site.toml"
    extra.write_text('[mail]\nhost = "smtp.from-file.example"\nport = 25\n', encoding="utf-8")
    env = {
        "TENDERPOOL_CONFIG": str(extra),
        "TENDERPOOL_MAIL_PORT": "2525",
        "TENDERPOOL_DATABASE_URL": "postgresql+psycopg://u@db/tp",
        "TENDERPOOL_SECURITY_COOKIE_SECURE": "true",
        "TENDERPOOL_CHAMBERS_CCI77_DEPARTMENTS": "77,78",
        "TENDERPOOL_CHAMBERS_CCI91_NAME": "CCI Essonne (test)",
    }
    settings = load_settings(environ=env)
    assert settings.mail.host == "smtp.from-file.example"  # file
    assert settings.mail.port == 2525  # environment beats file
    assert settings.database_url == "postgresql+psycopg://u@db/tp"
    assert settings.security.cookie_secure is True
    assert settings.chamber("cci77").departments == ("77", "78")
    assert settings.chamber("cci91").name == "CCI Essonne (test)"


def test_a_new_chamber_joins_by_configuration(tmp_path: Path) -> None:
    extra = tmp_path / "site.toml"
    extra.write_text(
        '[chambers.cci78]\nname = "CCI Versailles-Yvelines"\ndepartments = ["78"]\n', encoding="utf-8"
    )
    settings = load_settings(environ={"TENDERPOOL_CONFIG": str(extra)})
    assert settings.chamber_for_department("78").slug == "cci78"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TENDERPOOL_ENV": "staging"}, "env must be one of"),
        ({"TENDERPOOL_MAIL_SECURITY": "ssl"}, "mail.security"),
        ({"TENDERPOOL_SERVER_PORT": "99999"}, "server.port"),
        ({"TENDERPOOL_SERVER_PORT": "cinq"}, "not a valid int"),
        ({"TENDERPOOL_APP_TIMEZONE": "Mars/Olympus"}, "app.timezone"),
        ({"TENDERPOOL_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"TENDERPOOL_CHAMBERS_CCI91_DEPARTMENTS": "77"}, "belongs to both"),
        ({"TENDERPOOL_CHAMBERS_CCI91_DEPARTMENTS": "999"}, "not a département code"),
    ],
)
def test_invalid_values_stop_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_unknown_key_in_a_file_is_refused(tmp_path: Path) -> None:
    extra = tmp_path / "site.toml"
    extra.write_text("[mail]\nhots = 'typo'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown setting 'mail\.hots'"):
        load_settings(environ={"TENDERPOOL_CONFIG": str(extra)})


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings(environ={"TENDERPOOL_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize("secret", [None, "dev-secret-key-not-for-production", "short"])
def test_production_refuses_a_missing_or_development_secret(secret: str | None) -> None:
    env = {"TENDERPOOL_ENV": "production"}
    if secret is not None:
        env["TENDERPOOL_SECRET_KEY"] = secret
    with pytest.raises(ConfigError, match="TENDERPOOL_SECRET_KEY"):
        load_settings(environ=env)


def test_production_accepts_a_real_secret_and_forces_secure_cookies() -> None:
    settings = load_settings(environ={"TENDERPOOL_ENV": "production", "TENDERPOOL_SECRET_KEY": "k" * 48})
    assert settings.is_production and settings.security.cookie_secure


def test_the_service_refuses_to_start_in_production_without_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDERPOOL_")}
    env["TENDERPOOL_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-m", "tenderpool.cli", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "TENDERPOOL_SECRET_KEY" in result.stderr and "secrets.token_urlsafe" in result.stderr
