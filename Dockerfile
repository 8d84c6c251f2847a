# syntax=docker/dockerfile:1
# controlplane: a static binary on distroless, running as non-root (`make image`).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/controlplane ./cmd/controlplane

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/controlplane /controlplane
# nonroot, numerically, so that the kubelet can verify runAsNonRoot.
USER 65532:65532
EXPOSE 15010 15012 15014
ENTRYPOINT ["/controlplane"]
CMD ["serve"]
