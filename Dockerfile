# aetherisd image: a build stage (compiler and -dev packages, scripts/build-release.sh) and a
# runtime stage on debian:bookworm-slim with only the shared libraries the binaries link, a
# non-root user, and a health check on /readyz. Configure it with AETHERIS_* variables
# (aetherisd --help lists them); compose/docker-compose.yml runs it with its dependencies.
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config python3 python3-yaml \
      libmicrohttpd-dev libhiredis-dev libmongoc-dev libbson-dev libcurl4-openssl-dev \
      libjansson-dev libpaho-mqtt-dev libssl-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/build-release.sh /opt/aetheris /tmp/build

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libhiredis0.14 libmongoc-1.0-0 libbson-1.0-0 libcurl4 libjansson4 \
      libpaho-mqtt1.3 libssl3 libsqlite3-0 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/aetheris --shell /usr/sbin/nologin aetheris \
 && mkdir -p /var/lib/aetheris \
 && chown aetheris:aetheris /var/lib/aetheris
COPY --from=build /opt/aetheris /opt/aetheris
ENV PATH=/opt/aetheris/bin:$PATH \
    AETHERIS_HTTP_HOST=0.0.0.0 \
    AETHERIS_DATA_DIR=/var/lib/aetheris \
    AETHERIS_SQLITE_PATH=/var/lib/aetheris/aetheris.db
USER aetheris
WORKDIR /var/lib/aetheris
VOLUME /var/lib/aetheris
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz >/dev/null || exit 1
ENTRYPOINT ["aetherisd"]
