#!/usr/bin/env bash
# Builds the real components the tests talk to into a cache folder outside the
# repo, once, and prints lines to eval: KUBEBUILDER_ASSETS and the tools' bin dir.
#   kube-apiserver + etcd (hack/kubetools), grpcurl, pilot-agent and istioctl
#   (hack/istiotools, the same istio.io/istio) and Istio's VM start script.
# With --istiod also istiod (pilot-discovery, ~3.5 min to build) and Istio's
# CRDs (istio-crds.yaml) for the API server it watches: make bench-istiod
# measures it as a peer; make test and CI do not build it.
set -euo pipefail
istiod=false
for arg in "$@"; do
	case $arg in
	--istiod) istiod=true ;;
	*) echo "usage: $0 [--istiod]" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/controlplane
bin=$cache/bin
mkdir -p "$bin"
assets=$("$here/build-kube.sh")
if [ ! -x "$bin/grpcurl" ]; then
	GOBIN=$bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
fi
# istio_build NAME PACKAGE builds a command of istio.io/istio once.
istio_build() {
	if [ ! -x "$bin/$1" ]; then
		(cd "$here/istiotools" && go build -trimpath -o "$bin/$1.tmp" "istio.io/istio/$2")
		mv "$bin/$1.tmp" "$bin/$1"
	fi
}
istio_build pilot-agent pilot/cmd/pilot-agent
istio_build istioctl istioctl/cmd/istioctl
if $istiod; then
	istio_build pilot-discovery pilot/cmd/pilot-discovery
	if [ ! -s "$bin/istio-crds.yaml" ]; then
		src=$(cd "$here/istiotools" && go list -m -f '{{.Dir}}' istio.io/istio)
		install -m 0644 "$src/manifests/charts/base/files/crd-all.gen.yaml" "$bin/istio-crds.yaml"
	fi
fi
# Istio's VM start script (what its VM packages install as
# /usr/local/bin/istio-start.sh), from the same istio.io/istio.
if [ ! -x "$bin/istio-start.sh" ]; then
	src=$(cd "$here/istiotools" && go list -m -f '{{.Dir}}' istio.io/istio)
	install -m 0755 "$src/tools/packaging/common/istio-start.sh" "$bin/istio-start.sh"
fi
echo "export KUBEBUILDER_ASSETS=$assets"
echo "export CONTROLPLANE_TOOLS_BIN=$bin"
