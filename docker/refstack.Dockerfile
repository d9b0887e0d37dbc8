# The reference stack image: `python -m harness.refstack node|gate|inspector|schema-init --config FILE`.
#
# Build from the repository root:
#   docker build -f docker/refstack.Dockerfile -t goverse-harness/refstack:dev .
#
# Multi-stage: the build stage makes a virtualenv with only the packages the reference stack imports
# at run time (not the harness's plotting/reporting/test dependencies), the runtime stage copies that
# venv onto python:slim and runs as an unprivileged numeric user (65532, matching the manifests'
# runAsUser) with nothing writable but /tmp, which the pod mounts as an emptyDir.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Runtime dependencies of harness.refstack (a subset of pyproject's [project].dependencies): the same file
# the Docker-free image build installs (tests/platforms/kubernetes/test_k8s_images.py keeps the two identical).
COPY docker/refstack-requirements.txt /tmp/refstack-requirements.txt
RUN pip install -r /tmp/refstack-requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY harness ./harness
# --no-deps: the harness's own heavy dependencies (matplotlib, pytest, Jinja2...) stay out of the image.
RUN pip install --no-deps . \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && python -m compileall -q /opt/venv/lib

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="goverse-harness reference stack" \
      org.opencontainers.image.description="A small implementation of the Goverse cluster contract"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
USER 65532:65532
EXPOSE 7001 9101 8080 9102 8081
ENTRYPOINT ["python", "-m", "harness.refstack"]
CMD ["--help"]
