# syntax=docker/dockerfile:1
# The control plane and the vLLM-compatible mock, for docker-compose.yml. The wasm filter is
# built on the host (`cargo xtask build`) and mounted into the official Envoy image.
#
#   docker build --target control-plane -t vllm-gateway/control-plane .
#   docker build --target mock-vllm     -t vllm-gateway/mock-vllm .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p control-plane -p mock-vllm \
 && mkdir -p /out \
 && cp target/release/control-plane target/release/mock-vllm /out/

# Small runtime: Debian slim (glibc, bash for the health checks), no compiler, non-root user.
FROM debian:bookworm-slim AS runtime
# /var/log/vllm-gateway: the durable access log Envoy writes and the control plane ingests (a
# volume shared by both; Envoy runs as this same uid in docker-compose.yml).
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
 && mkdir -p /data /var/log/vllm-gateway \
 && chown gateway:gateway /data /var/log/vllm-gateway && chmod 0750 /var/log/vllm-gateway
USER 10001:10001
WORKDIR /data

# Tokens it generates are written to /data/admin-token and /data/state-token (mode 0600), never
# to its output. The access-log sink (8082) takes only streams carrying the state token; keep it
# (and 8081's /api/*, or GATEWAY_ADMIN_ADDR's port) off the host.
FROM runtime AS control-plane
COPY --from=build /out/control-plane /usr/local/bin/control-plane
ENV GATEWAY_HTTP_ADDR=0.0.0.0:8081 \
    GATEWAY_ALS_ADDR=0.0.0.0:8082 \
    GATEWAY_DB=sqlite:///data/gateway.db
EXPOSE 8081 8082
ENTRYPOINT ["/usr/local/bin/control-plane"]

FROM runtime AS mock-vllm
COPY --from=build /out/mock-vllm /usr/local/bin/mock-vllm
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/mock-vllm"]
