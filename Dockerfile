# OUD care pathway service: slim, non-root, gunicorn via `pathway serve`.
# Stage 1 builds the production wheel: the pure core and card building compiled with mypyc
# (PATHWAY_COMPILE=1, see setup.py), which needs a C compiler that the runtime image does not carry.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pathway ./pathway
RUN pip install --no-cache-dir . "mypy>=1.10" wheel types-requests types-PyYAML \
    && PATHWAY_COMPILE=1 pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels .

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
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
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
