# The consent service: the wheel in a virtualenv, run by gunicorn as a user
# without privileges. The same image runs the worker, the scheduler and the
# migrations (compose.yaml). Build: docker build -t consent-service .
#
# The build stage runs deploy/build.sh, the script CI runs as well
# (tests/deploy/), so what CI exercises is what this image holds.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN deploy/build.sh /opt/consent

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/consent --create-home consent
# Same path and same Python as in the build stage: the venv's scripts name both.
COPY --from=build /opt/consent /opt/consent
ENV PATH=/opt/consent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CONSENT_ENV=production \
    INSTANCE_PATH=/var/lib/consent \
    PORT=8000
USER consent
WORKDIR /var/lib/consent
VOLUME ["/var/lib/consent"]
EXPOSE 8000
# /healthz answers 200 while the database and broker answer ("ok", or
# "degraded" when the periodic work lags: an alert, not a restart); 503
# ("unavailable") marks the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=4)"]
# SIGTERM (docker stop) makes gunicorn finish the requests in flight
# (graceful_timeout 25 s; docker stop waits 10 s unless told more: compose.yaml
# gives 30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["gunicorn", "-c", "python:gunicorn_conf"]
CMD ["app:create_app()"]
