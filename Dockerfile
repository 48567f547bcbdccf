# syntax=docker/dockerfile:1
# Build stage: build the wheel from the source tree.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m build --wheel --outdir /dist

# Runtime stage: the wheel only, no compilers, no source tree.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin operator
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["replication-operator", "run"]
CMD ["--all-namespaces"]
