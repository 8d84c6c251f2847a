#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into a cache folder outside the
# repo, once. Prints the folder. Tests find it through KUBEBUILDER_ASSETS.
set -euo pipefail
version=v1.37.2
here=$(cd "$(dirname "$0")" && pwd)
out=${KUBE_ASSETS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/controlplane/kube-$version}
mkdir -p "$out"
cd "$here/kubetools"
if [ ! -x "$out/kube-apiserver" ]; then
	pkg=k8s.io/component-base/version
	go build -trimpath -o "$out/kube-apiserver.tmp" \
		-ldflags "-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37" \
		k8s.io/kubernetes/cmd/kube-apiserver
	mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
fi
if [ ! -x "$out/etcd" ]; then
	go build -trimpath -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$out/etcd.tmp" "$out/etcd"
fi
echo "$out"
