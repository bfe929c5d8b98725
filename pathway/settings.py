"""Every setting, typed, from `PATHWAY_*` environment variables (CONTRACT.md §4), in one place.

An optional file (`PATHWAY_SETTINGS_FILE`, lines of `NAME=value`) supplies defaults that the
environment overrides. Secrets (the SMART private key) are read from files named here, never
written to logs: `Settings.redacted()` is what may be printed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pathway.config import DEFAULT_CONFIG_DIR, DEFAULT_PROFILES_DIR

AUTH_MODES = ("jwt", "off")
WRITEBACK_MODES = ("off", "direct", "system-actions", "document-reference")
FALLBACK_MODES = ("document-reference", "system-actions")


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it."""


def _normalise_base(url: str) -> str:
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # default http://{host}:{port}
    database_url: str = ""  # default sqlite:///./var/pathway.sqlite3
    auth_mode: str = "jwt"
    cds_clients_file: Path | None = None
    fhir_allowlist: tuple[str, ...] = ()
    fhir_base_url: str | None = None
    writeback: str = "off"
    writeback_fallback: str = "document-reference"
    notification_token: str | None = None
    smart_client_id: str | None = None
    smart_private_key_file: Path | None = None
    smart_token_url: str | None = None
    # The clinician's app (CONTRACT §6): a SMART App Launch client of the EHR.
    smart_app_client_id: str | None = None
    smart_app_client_secret: str | None = None
    app_frame_ancestors: str = "'self'"
    smart_app_auth_allowlist: tuple[str, ...] = ()
    app_session_minutes: int = 480
    config_dir: Path = DEFAULT_CONFIG_DIR
    profiles_dir: Path = DEFAULT_PROFILES_DIR
    max_body_bytes: int = 8 * 1024 * 1024
    http_timeout_seconds: float = 10.0
    hook_fetch_timeout_seconds: float = 3.0
    workers: int = 2
    request_timeout_seconds: int = 30
    log_level: str = "INFO"
    jwt_max_lifetime_seconds: int = 300
    metrics_token: str | None = None
    metrics_bind: tuple[str, int] | None = None
    cors_origins: frozenset[str] = frozenset()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def fhir_server_allowed(self, url: str) -> bool:
        return _normalise_base(url) in self.fhir_allowlist

    def redacted(self) -> dict[str, object]:
        """What may be logged: no secrets (the key file path is shown, never its content)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for secret in ("notification_token", "metrics_token", "smart_app_client_secret"):
            if out.get(secret):
                out[secret] = "***"
        db = str(out["database_url"])
        if "@" in db:  # user:password@host
            scheme, rest = db.split("://", 1)
            out["database_url"] = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = dict(os.environ if env is None else env)
        file = source.get("PATHWAY_SETTINGS_FILE")
        values: dict[str, str] = {}
        if file:
            values.update(_read_settings_file(Path(file)))
        values.update({k: v for k, v in source.items() if k.startswith("PATHWAY_")})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            v = values.get(f"PATHWAY_{name}")
            return v.strip() if isinstance(v, str) and v.strip() else None

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                n = int(raw)
            except ValueError as e:
                raise SettingsError(f"PATHWAY_{name} must be a whole number, got {raw!r}") from e
            if not low <= n <= high:
                raise SettingsError(f"PATHWAY_{name} must be between {low} and {high}")
            return n

        host = get("HOST") or "127.0.0.1"
        port = integer("PORT", 8080, 1, 65535)
        auth = (get("AUTH_MODE") or "jwt").lower()
        if auth not in AUTH_MODES:
            raise SettingsError(f"PATHWAY_AUTH_MODE must be one of {', '.join(AUTH_MODES)}")
        writeback = (get("WRITEBACK") or "off").lower()
        if writeback not in WRITEBACK_MODES:
            raise SettingsError(f"PATHWAY_WRITEBACK must be one of {', '.join(WRITEBACK_MODES)}")
        fallback = (get("WRITEBACK_FALLBACK") or "document-reference").lower()
        if fallback not in FALLBACK_MODES:
            raise SettingsError(
                f"PATHWAY_WRITEBACK_FALLBACK must be one of {', '.join(FALLBACK_MODES)}"
            )
        allow = tuple(
            _normalise_base(u) for u in (get("FHIR_ALLOWLIST") or "").split(",") if u.strip()
        )
        for u in allow:
            _check_url("PATHWAY_FHIR_ALLOWLIST", u)
        base = get("FHIR_BASE_URL")
        if base:
            base = _normalise_base(base)
            _check_url("PATHWAY_FHIR_BASE_URL", base)
        public = get("PUBLIC_URL")
        if public:
            public = public.rstrip("/")
            _check_url("PATHWAY_PUBLIC_URL", public)
        db = get("DATABASE_URL") or f"sqlite:///{Path('var') / 'pathway.sqlite3'}"
        timeout = get("HTTP_TIMEOUT_SECONDS")
        try:
            http_timeout = float(timeout) if timeout else 10.0
        except ValueError as e:
            raise SettingsError("PATHWAY_HTTP_TIMEOUT_SECONDS must be a number") from e
        hook_timeout = get("HOOK_FETCH_TIMEOUT_SECONDS")
        try:
            hook_fetch_timeout = float(hook_timeout) if hook_timeout else 3.0
        except ValueError as e:
            raise SettingsError("PATHWAY_HOOK_FETCH_TIMEOUT_SECONDS must be a number") from e
        auth_allow = tuple(
            _normalise_base(u)
            for u in (get("SMART_APP_AUTH_ALLOWLIST") or "").split(",")
            if u.strip()
        )
        for u in auth_allow:
            _check_url("PATHWAY_SMART_APP_AUTH_ALLOWLIST", u)
        ancestors = get("APP_FRAME_ANCESTORS") or "'self'"
        if any(c in ancestors for c in ";,\r\n"):
            raise SettingsError(
                "PATHWAY_APP_FRAME_ANCESTORS is a space-separated list of CSP sources "
                "(e.g. 'self' https://ehr.example.org)"
            )
        clients = get("CDS_CLIENTS_FILE")
        key = get("SMART_PRIVATE_KEY_FILE")
        metrics_bind = _bind("PATHWAY_METRICS_BIND", get("METRICS_BIND"))
        if (
            metrics_bind is not None
            and metrics_bind[1] == port
            and metrics_bind[0]
            in (
                host,
                "0.0.0.0",  # noqa: S104 (a comparison, not a bind)
                "::",
            )
        ):
            raise SettingsError("PATHWAY_METRICS_BIND must differ from PATHWAY_HOST:PATHWAY_PORT")
        metrics_token = get("METRICS_TOKEN")
        if metrics_token is not None and len(metrics_token) < 16:
            raise SettingsError("PATHWAY_METRICS_TOKEN must be at least 16 characters")
        return cls(
            host=host,
            port=port,
            public_url=public or "",
            database_url=db,
            auth_mode=auth,
            cds_clients_file=Path(clients) if clients else None,
            fhir_allowlist=allow,
            fhir_base_url=base,
            writeback=writeback,
            writeback_fallback=fallback,
            notification_token=get("NOTIFICATION_TOKEN"),
            smart_client_id=get("SMART_CLIENT_ID"),
            smart_private_key_file=Path(key) if key else None,
            smart_token_url=get("SMART_TOKEN_URL"),
            smart_app_client_id=get("SMART_APP_CLIENT_ID"),
            smart_app_client_secret=get("SMART_APP_CLIENT_SECRET"),
            app_frame_ancestors=ancestors,
            smart_app_auth_allowlist=auth_allow,
            app_session_minutes=integer("APP_SESSION_MINUTES", 480, 5, 24 * 60),
            config_dir=Path(get("CONFIG_DIR") or DEFAULT_CONFIG_DIR),
            profiles_dir=Path(get("PROFILES_DIR") or DEFAULT_PROFILES_DIR),
            max_body_bytes=integer("MAX_BODY_BYTES", 8 * 1024 * 1024, 1024, 256 * 1024 * 1024),
            http_timeout_seconds=http_timeout,
            hook_fetch_timeout_seconds=hook_fetch_timeout,
            workers=integer("WORKERS", 2, 1, 64),
            request_timeout_seconds=integer("REQUEST_TIMEOUT_SECONDS", 30, 5, 600),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            jwt_max_lifetime_seconds=integer("JWT_MAX_LIFETIME_SECONDS", 300, 10, 3600),
            metrics_token=metrics_token,
            metrics_bind=metrics_bind,
            cors_origins=frozenset(
                _origin(o) for o in (get("CORS_ORIGINS") or "").split(",") if o.strip()
            ),
        )


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name}: {url!r} is not an http(s) URL")


def _origin(raw: str) -> str:
    """An origin exactly as a browser sends it in `Origin`: scheme://host[:port], lower case, no
    path and no wildcard (each allowed origin is compared as a whole string)."""
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or "*" in value
    ):
        raise SettingsError(
            f"PATHWAY_CORS_ORIGINS: {raw.strip()!r} is not an origin (scheme://host[:port])"
        )
    try:
        port = parts.port
    except ValueError as e:
        raise SettingsError(f"PATHWAY_CORS_ORIGINS: {raw.strip()!r} has a bad port") from e
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _bind(name: str, raw: str | None) -> tuple[str, int] | None:
    if raw is None:
        return None
    host, sep, port = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingsError(f"{name} must be host:port, got {raw!r}")
    return host, int(port)


def _read_settings_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SettingsError(f"PATHWAY_SETTINGS_FILE {path}: {e.strerror}") from e
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise SettingsError(f"{path}:{n}: expected NAME=value")
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out
