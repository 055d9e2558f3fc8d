# syntax=docker/dockerfile:1
# The regsweep image: one static binary on distroless/static (no shell, no libc, no package
# manager), running as a non-root user. By default it runs the operator; the sweep Job's init
# container runs it as `regsweep copy-self /opt/regsweep/regsweep` to bring the binary into the
# registry's own image, which then runs the sweep against the registry's volume.
#
#   docker build -t regsweep:dev .
#   docker run --rm regsweep:dev --help
#
# Reproducible: the toolchain is pinned, `cargo build --locked` uses exactly Cargo.lock, and
# the binary is linked statically (glibc's built-in DNS and files lookups need no NSS modules),
# so it runs unchanged in the distroless image and in the registry's Alpine image.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY benches benches
COPY examples examples
COPY crds crds
# The crt-static flag applies to the target only (hence the explicit --target), not to build
# scripts and proc macros.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release --target "$target" --bin regsweep \
 && install -D -m 0755 "target/$target/release/regsweep" /out/regsweep \
 && /out/regsweep crd > /dev/null

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="regsweep" \
      org.opencontainers.image.description="Cleans an in-cluster CNCF Distribution registry: freeze, delete, garbage-collect, thaw, report" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/regsweep /usr/local/bin/regsweep
# distroless's "nonroot" user; the chart's securityContext says the same.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/regsweep"]
CMD ["operator"]
