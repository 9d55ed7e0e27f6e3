# The Sluice gateway. Config is mounted read-only at /etc/sluice; keys come from the environment.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md requirements-build.lock requirements-runtime.lock ./
# Every step hash-checked, as in the README: pip and the build backend from requirements-build.lock,
# then the service's dependencies, then Sluice itself built with that backend (no isolated build
# environment fetching an unchecked setuptools).
RUN pip install --no-cache-dir --require-hashes -r requirements-build.lock \
    && pip install --no-cache-dir --prefix=/install --require-hashes -r requirements-runtime.lock
COPY gateway ./gateway
COPY policies ./policies
RUN pip install --no-cache-dir --prefix=/install --no-deps --no-build-isolation .

FROM python:3.11-slim
# The audit spool's folder (SLUICE_AUDIT_SPOOL below; docker-compose.yml mounts its `spool` volume
# here) is created now, owned by the non-root user: a new named volume takes the folder's owner
# from the image, so the gateway can write it. Without it the volume is root's, and `sluice serve`
# refuses to start with one line saying so (records wait in the spool while the database is down).
RUN useradd --create-home --uid 10001 sluice \
    && install -d -o sluice -g sluice -m 0700 /home/sluice/spool
COPY --from=build /install /usr/local
COPY config/sluice.yaml /etc/sluice/sluice.yaml
USER sluice
WORKDIR /home/sluice
ENV SLUICE_CONFIG=/etc/sluice/sluice.yaml \
    SLUICE_AUDIT_SPOOL=/home/sluice/spool/audit.spool \
    SLUICE_HOST=0.0.0.0 \
    SLUICE_PORT=8080 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["sluice", "serve"]
