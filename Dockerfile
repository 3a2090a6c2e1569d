# syntax=docker/dockerfile:1
# Container images of the gateway and the example tool workers, built from
# the repository root:
#   docker build -t assistants-gateway:dev .
#   docker build --target python-worker -t assistants-python-worker:dev .
# The default (last) stage is the gateway image; it also holds fake-openai,
# stock-price-worker and assistantsctl. Both runtime images run as the
# numeric non-root user 65532 and hold only runtime shared libraries.
# Base images are pinned by tag (Debian 12, bookworm), not by digest: pin
# them (debian:12-slim@sha256:...) where your registry can resolve one.
# tests/k8s checks this file statically (stages, user, binaries, libraries).

# ---- builder: Debian 12's toolchain and -dev packages, Release binaries.
FROM debian:12 AS builder
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN ./scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DASSISTANTS_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
      --target assistants-gateway fake-openai stock-price-worker assistantsctl \
 && mkdir -p /out/bin \
 && for b in assistants-gateway fake-openai stock-price-worker assistantsctl; do \
      find /build -type f -name "$b" -perm -u+x -exec cp {} /out/bin/ \; ; \
    done \
 && strip /out/bin/*
# The Python worker's stubs, generated from proto/ like everywhere else.
RUN ./scripts/python-stubs.sh /out/python/stubs \
 && cp tool_workers/examples/python/assistants_worker.py \
       tool_workers/examples/python/calculator_worker.py /out/python/

# ---- python-worker: the calculator example on Debian's python3-grpcio.
FROM debian:12-slim AS python-worker
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-grpcio python3-protobuf \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/python/ /opt/assistants/python/
ENV PYTHONPATH=/opt/assistants/python/stubs:/opt/assistants/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 50061
ENTRYPOINT ["/usr/bin/python3", "/opt/assistants/python/calculator_worker.py"]

# ---- gateway: the runtime libraries of the binaries, nothing else.
FROM debian:12-slim AS gateway
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libcurl4 \
      libsqlite3-0 libpq5 libevent-2.1-7 libssl3 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 zlib1g libc-ares2 libre2-9 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/bin/ /usr/local/bin/
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/assistants-gateway"]
