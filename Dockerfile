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
# The ACL the image starts with (every user may read and write every topic);
# mount your own over it. The password file is mounted by the operator at
# /etc/sockmq/passwd, owned by the user below (chown 65532:65532; 0600 is
# fine). cmd/sockmq/container_test.go checks this file's view of them.
COPY deploy/acl /etc/sockmq/acl
COPY --from=build --chown=65532:65532 /out/data /var/lib/sockmq
USER 65532:65532
VOLUME ["/var/lib/sockmq"]
EXPOSE 1883 8883 8080
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/sockmq"]
CMD ["serve", "-c", "/etc/sockmq/config.yaml"]
