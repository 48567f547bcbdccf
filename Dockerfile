# syntax=docker/dockerfile:1
# The operator's image: the wheel and its dependencies in a virtualenv on a Python base,
# nothing else (no pip, no build tools, no source tree), run as uid 10001, happy with a
# read-only root filesystem (bytecode compiled at build time, nothing written at run).
#
#   docker build -t replication-operator .
#   docker build --build-arg BASE=localhost/debian-python:bookworm .   # any Debian-like
#                                               # base with python3 (+ python3-venv)
#
# BASE is used by both stages, so the virtualenv's interpreter path is the base's own.
ARG BASE=python:3.11.11-slim-bookworm

# Build stage: the wheel, then a virtualenv holding it and its dependencies.
# - The kubernetes client (>= 35) ships a second, asyncio copy of itself, kubernetes/aio
#   (68 MB of 140), which nothing here imports: it goes.
# - Importing every module of the operator writes the bytecode of exactly what it loads
#   (the root filesystem is read-only at run time), and fails the build if a module
#   needs what was removed. Compiling the whole virtualenv would add 66 MB of bytecode
#   for modules never loaded (the client's 850 model classes load on demand).
FROM ${BASE} AS build
ARG IMPORT_EVERY_MODULE="import importlib, pkgutil, replication_operator as r; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(r.__path__, r.__name__ + '.') \
 if not m.name.endswith('__main__')]"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/build-tools \
 && /opt/build-tools/bin/pip install -q build==1.2.2
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/build-tools/bin/python -m build --wheel --outdir /dist \
 && python3 -m venv /opt/replication-operator \
 && /opt/replication-operator/bin/pip install -q /dist/*.whl \
 && /opt/replication-operator/bin/pip uninstall -q -y pip setuptools wheel \
 && rm -rf /opt/replication-operator/lib/python3*/site-packages/kubernetes/aio \
 && /opt/replication-operator/bin/python -c "$IMPORT_EVERY_MODULE" \
 && /opt/replication-operator/bin/replication-operator version

# Runtime stage: the base plus the virtualenv. The base's own pip (the official images
# have one) goes too: nothing installs anything at run time.
FROM ${BASE}
RUN (python3 -m pip uninstall -q -y pip setuptools wheel 2>/dev/null || true) \
 && groupadd --gid 10001 replication-operator \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin replication-operator
COPY --from=build /opt/replication-operator /opt/replication-operator
ENV PATH=/opt/replication-operator/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["replication-operator", "run"]
CMD ["--all-namespaces"]
