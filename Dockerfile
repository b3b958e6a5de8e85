# KubeSage Cluster Service: gunicorn (gthread) serving the Flask app on port 8008.
# Build: docker build -t kubesage/cluster-service .
# Run:   docker run --env-file .env -p 8008:8008 kubesage/cluster-service
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8008 \
    HOST=0.0.0.0

WORKDIR /app

# A fixed, non-root uid/gid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin app

# Runtime dependencies only (pinned); the layer is cached until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code stays root-owned and read-only for the service user.
COPY cluster_service/ ./cluster_service/
COPY wsgi.py gunicorn.conf.py ./

USER 10001:10001

EXPOSE 8008

# Liveness only: /health never touches the broker. slim has no curl, so python's urllib;
# it follows PORT and USE_SSL (the loopback check does not verify the pod's own cert).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as u; tls = os.environ.get('USE_SSL', 'false').strip().lower() in ('1', 'true', 'yes', 'on'); u.urlopen(('https' if tls else 'http') + '://127.0.0.1:' + (os.environ.get('PORT') or '8008') + '/api/v3.0/cluster/health', timeout=4, context=ssl._create_unverified_context() if tls else None)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
