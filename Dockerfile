# One image for every role of sourcecheck; the command chooses it:
#   sourcecheck api --host 0.0.0.0 | sourcecheck worker -n worker@%h | sourcecheck flower | sourcecheck db upgrade
# (docker-compose.yml and deploy/kubernetes/ use it this way). It starts in the production
# profile: it needs SOURCECHECK_SECRET_KEYS, SOURCECHECK_DATABASE_URL and SOURCECHECK_REDIS_URL.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SOURCECHECK_PROFILE=production \
    SOURCECHECK_DATA_DIR=/home/sourcecheck/data

# A fixed non-root user (uid 10001), so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 sourcecheck \
 && useradd --system --uid 10001 --gid sourcecheck --create-home --home-dir /home/sourcecheck sourcecheck

WORKDIR /src
# constraints.txt pins every dependency, transitive ones included; the migrations ship inside
# api/. No extras: the image talks to a Redis service and needs no embedded redis-server.
COPY pyproject.toml README.md constraints.txt ./
COPY api api
COPY worker worker
COPY connectors connectors
COPY cli cli
RUN pip install -c constraints.txt . \
 && rm -rf /src

USER 10001:10001
WORKDIR /home/sourcecheck
# 8000: the API; 9100: the API's /metrics in production (SOURCECHECK_METRICS_PORT); 5555: Flower.
EXPOSE 8000 9100 5555
CMD ["sourcecheck", "api", "--host", "0.0.0.0", "--port", "8000"]
