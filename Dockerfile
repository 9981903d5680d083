# The operator's image for users with Docker:
#   docker build -t ghcr.io/hostplane/hostplane-operator:v0.1.0 .
#   kind load docker-image ghcr.io/hostplane/hostplane-operator:v0.1.0   # into a kind seed
# The binary links glibc dynamically (gnu target); distroless/cc carries glibc and libgcc and runs
# as the non-root user 65532, as the manifests require. Machines without Docker build the same
# layout (binary + the libraries `ldd` names, user 65532) with e2e/seed/build-images --operator.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hostplane-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hostplane-operator /usr/local/bin/hostplane-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hostplane-operator"]
