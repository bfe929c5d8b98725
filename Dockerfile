# OUD care pathway service: slim, non-root, gunicorn via `pathway serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATHWAY_HOST=0.0.0.0 \
    PATHWAY_PORT=8080 \
    PATHWAY_CONFIG_DIR=/app/config \
    PATHWAY_PROFILES_DIR=/app/fhir_profiles \
    PATHWAY_DATABASE_URL=sqlite:////app/var/pathway.sqlite3

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pathway ./pathway
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home /app pathway \
    && mkdir -p /app/var && chown pathway /app/var
COPY config ./config
COPY fhir_profiles ./fhir_profiles
COPY wsgi.py ./

USER pathway
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["pathway", "serve"]
