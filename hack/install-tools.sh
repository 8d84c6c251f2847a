#!/usr/bin/env bash
# Builds the real components the tests talk to into a cache folder outside the
# repo, once, and prints lines to eval: KUBEBUILDER_ASSETS and the tools' bin dir.
#   kube-apiserver + etcd (hack/kubetools), grpcurl, pilot-agent (hack/istiotools)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/controlplane
bin=$cache/bin
mkdir -p "$bin"
assets=$("$here/build-kube.sh")
if [ ! -x "$bin/grpcurl" ]; then
	GOBIN=$bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
fi
if [ ! -x "$bin/pilot-agent" ]; then
	(cd "$here/istiotools" && go build -trimpath -o "$bin/pilot-agent.tmp" istio.io/istio/pilot/cmd/pilot-agent)
	mv "$bin/pilot-agent.tmp" "$bin/pilot-agent"
fi
echo "export KUBEBUILDER_ASSETS=$assets"
echo "export CONTROLPLANE_TOOLS_BIN=$bin"
