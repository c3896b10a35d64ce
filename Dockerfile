# Build: docker build -t ratesd .   (docker compose up builds it too)
# syntax=docker/dockerfile:1
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY benches benches
# Workspace members: cargo reads their manifests even when building ratesd alone.
COPY loadtest/ws-load loadtest/ws-load
COPY loadtest/goose loadtest/goose
# The registry and the target directory are build caches (BuildKit, the
# default builder): a change to src/ rebuilds ratesd, not its dependencies.
# The `dist` profile strips the binary and leaves out debug info.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p ratesd --bin ratesd \
 && cp target/dist/ratesd /usr/local/bin/ratesd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ratesd /usr/local/bin/ratesd
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
