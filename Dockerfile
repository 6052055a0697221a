# syntax=docker/dockerfile:1
#
# Airbyte source connector for Convex: airbyte/source-convex:1.1.6
#
#   docker build -t airbyte/source-convex:1.1.6 .
#   docker run --rm airbyte/source-convex:1.1.6 spec
#
# Stages:
#   builder  compiles a fully static source-convex (glibc, +crt-static) with scripts/build-static.sh
#            and drops its DWARF debug info (symbols stay, for readable panic backtraces)
#   rootfs   assembles busybox + CA bundle + passwd/group with docker/assemble-rootfs.sh
#   runtime  FROM scratch: the rootfs, an empty /airbyte owned by 1000:1000 and the binary
#
# The runtime stage uses no RUN, so it can also be built without a container runtime:
# scripts/image-test.sh builds exactly this stage with buildah from a host-built binary and
# a host-assembled rootfs (it rewrites the three `COPY --from=<stage> /x` lines below to
# `COPY x` against a context laid out as out/rootfs, out/airbyte, out/source-convex). Keep
# those COPY lines in that shape.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The registry and target caches make rebuilds incremental on BuildKit/buildah.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static.sh source-convex \
    && mkdir -p /out \
    && strip --strip-debug -o /out/source-convex target/x86_64-unknown-linux-gnu/release/source-convex

FROM ${DEBIAN_IMAGE} AS rootfs
# Pinned for reproducibility (bookworm); override with --build-arg when Debian moves on.
ARG BUSYBOX_STATIC_VERSION=1:1.35.0-4+deb12u1+b1
ARG CA_CERTIFICATES_VERSION=20250419~deb12u2
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        busybox-static="${BUSYBOX_STATIC_VERSION}" \
        ca-certificates="${CA_CERTIFICATES_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
COPY docker/assemble-rootfs.sh /usr/local/bin/assemble-rootfs.sh
RUN /usr/local/bin/assemble-rootfs.sh /out /bin/busybox /etc/ssl/certs/ca-certificates.crt

FROM scratch AS runtime
COPY --from=rootfs /out/rootfs/ /
COPY --from=rootfs --chown=1000:1000 /out/airbyte/ /airbyte/
COPY --from=builder /out/source-convex /usr/local/bin/source-convex
ENV PATH=/usr/local/bin:/bin \
    AIRBYTE_ENTRYPOINT=/usr/local/bin/source-convex
LABEL io.airbyte.name=airbyte/source-convex \
      io.airbyte.version=1.1.6 \
      org.opencontainers.image.title=source-convex \
      org.opencontainers.image.description="Airbyte source connector for Convex (streaming export)" \
      org.opencontainers.image.version=1.1.6 \
      org.opencontainers.image.licenses=MIT
WORKDIR /airbyte
USER airbyte
ENTRYPOINT ["/usr/local/bin/source-convex"]
