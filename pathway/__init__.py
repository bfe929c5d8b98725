"""OUD care pathway service: CDS Hooks and FHIR decision support for opioid use disorder."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from pathway.config import LoadedConfig
from pathway.settings import Settings
from pathway.store.db import Store

__version__ = "0.1.0"
log = logging.getLogger("pathway")


def build() -> str:
    """ "compiled" when this process runs the mypyc-compiled build (`make compiled`, the wheel of
    the Dockerfile), else "source"."""
    import importlib.machinery

    import pathway.rules.findings as core

    compiled = (core.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled" if compiled else "source"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `test_config` may hold `settings` (a Settings), `config` (a LoadedConfig),
    `store` (a Store) and plain Flask config keys; otherwise settings come from PATHWAY_*."""
    from pathway.api import cds, cors, fhir_ops, health, notifications, observability
    from pathway.api.auth import Verifier, load_clients
    from pathway.api.errors import register_error_handlers
    from pathway.logs import configure_logging
    from pathway.service import Service

    overrides = dict(test_config or {})
    settings: Settings = overrides.pop("settings", None) or Settings.from_env()
    loaded: LoadedConfig | None = overrides.pop("config", None)
    store: Store | None = overrides.pop("store", None)
    configure_logging(settings.log_level)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config.update(overrides)
    service = Service(settings, loaded, store)
    app.extensions["pathway"] = service
    app.extensions["pathway.verifier"] = Verifier(
        load_clients(settings.cds_clients_file),
        service.store.remember_jti,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )
    if settings.auth_mode == "off":
        log.warning(
            "!!! PATHWAY_AUTH_MODE=off: CDS and FHIR callers are NOT authenticated. "
            "Development only: never run this way with patient data. !!!"
        )
    if settings.writeback != "off" and overrides.get("START_OUTBOX", True):
        service.writeback.start()
    register_error_handlers(app)
    from pathway.app import install as install_clinician_app

    install_clinician_app(app, service)  # before observability: it owns /app/'s frame headers
    observability.install(app)
    cors.install(app, settings.cors_origins)
    health.install(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(fhir_ops.bp)
    app.register_blueprint(cds.bp)
    app.register_blueprint(notifications.bp)
    return app
