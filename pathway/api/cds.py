"""CDS Hooks endpoints (CONTRACT.md §1)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("cds", __name__)
