# Multi-stage build: compile in the Rust image, run on a slim Debian with only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p farol && strip target/release/farol

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data --uid 10001 farol \
 && mkdir -p /data && chown farol /data
COPY --from=build /src/target/release/farol /usr/local/bin/farol
USER farol
WORKDIR /data
ENV FAROL_LISTEN=0.0.0.0:8080 \
    FAROL_DATA_DIR=/data \
    FAROL_LOG__FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["farol"]
CMD ["serve"]
