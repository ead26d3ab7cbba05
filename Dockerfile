# syntax=docker/dockerfile:1
# Multi-stage build: a static sockmq binary on a minimal image, run as an
# unprivileged user, reading /etc/sockmq/config.yaml and keeping its data in
# the /var/lib/sockmq volume.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sockmq ./cmd/sockmq \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sockmq /usr/local/bin/sockmq
COPY deploy/container.yaml /etc/sockmq/config.yaml
# The password and ACL files are expected beside the config, mounted by the
# operator: /etc/sockmq/passwd (and /etc/sockmq/acl if used).
COPY --from=build --chown=65532:65532 /out/data /var/lib/sockmq
USER 65532:65532
VOLUME ["/var/lib/sockmq"]
EXPOSE 1883 8883 8080
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/sockmq"]
CMD ["serve", "-c", "/etc/sockmq/config.yaml"]
