# syntax=docker/dockerfile:1
# The registry image: `registry` and `k8s-sync`, run as a non-root user (uid 100, gid 1000) with
# /data as the data directory. The Helm chart (helm/registry) runs this image.
#
#   docker build -t registry:0.1.0 .
#
# Where no base image can be pulled, helm/image/build.sh builds the same layout FROM scratch
# out of locally built binaries and their shared libraries.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin registry --bin k8s-sync \
 && install -D -m 0755 target/release/registry /out/registry \
 && install -D -m 0755 target/release/k8s-sync /out/k8s-sync

FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 1000 registry \
 && useradd --uid 100 --gid 1000 --home-dir /data --no-create-home --shell /usr/sbin/nologin registry \
 && mkdir -p /data /registry/config \
 && chown 100:1000 /data \
 && chmod 2775 /data
COPY --from=build /out/registry /out/k8s-sync /usr/local/bin/
USER 100:1000
WORKDIR /data
VOLUME /data
# HTTP, DNS (tcp+udp), server RPC, LAN (tcp+udp); k8s-sync's health endpoint.
EXPOSE 8500 8600 8600/udp 8300 8301 8301/udp 8080
ENTRYPOINT ["/usr/local/bin/registry"]
CMD ["agent", "-dev", "-client=0.0.0.0"]
