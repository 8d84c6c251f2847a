#!/usr/bin/env bash
# Builds the real components the tests talk to into a cache folder outside the
# repo, once, and prints lines to eval: KUBEBUILDER_ASSETS and the tools' bin dir.
#   kube-apiserver + etcd (hack/kubetools), grpcurl, pilot-agent and istioctl
#   (hack/istiotools, the same istio.io/istio) and Istio's VM start script
set -euo pipefail
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
# Istio's VM start script (what its VM packages install as
# /usr/local/bin/istio-start.sh), from the same istio.io/istio.
if [ ! -x "$bin/istio-start.sh" ]; then
	src=$(cd "$here/istiotools" && go list -m -f '{{.Dir}}' istio.io/istio)
	install -m 0755 "$src/tools/packaging/common/istio-start.sh" "$bin/istio-start.sh"
fi
echo "export KUBEBUILDER_ASSETS=$assets"
echo "export CONTROLPLANE_TOOLS_BIN=$bin"
