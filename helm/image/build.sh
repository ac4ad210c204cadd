#!/usr/bin/env bash
# Builds the registry OCI image FROM scratch with buildah, out of locally built binaries and
# the shared libraries they load (for machines where no base image can be pulled). The layout
# is the Dockerfile's: /usr/local/bin/{registry,k8s-sync}, uid 100 / gid 1000, /data.
#
#   helm/image/build.sh [-t localhost/registry:0.1.0] [-o image.oci.tar] REGISTRY_BIN [K8S_SYNC_BIN]
#
# Default binaries: target/release/registry and target/release/k8s-sync (k8s-sync is left out
# with a notice when it is not built). Debug information is stripped from the copies.
# Environment: STORAGE_DRIVER (default vfs, which works inside containers and on any
# filesystem); CONTAINERS_ROOT and CONTAINERS_RUNROOT, to keep the image in a storage of its
# own (then run it with `podman --root ... --runroot ... --storage-driver ...`).
set -euo pipefail

TAG=localhost/registry:0.1.0
ARCHIVE=
while getopts "t:o:" opt; do
    case $opt in
        t) TAG=$OPTARG ;;
        o) ARCHIVE=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REGISTRY_BIN=${1:-$TARGET/release/registry}
K8S_SYNC_BIN=${2:-$TARGET/release/k8s-sync}
STORE=(--storage-driver "${STORAGE_DRIVER:-vfs}")
[ -n "${CONTAINERS_ROOT:-}" ] && STORE+=(--root "$CONTAINERS_ROOT")
[ -n "${CONTAINERS_RUNROOT:-}" ] && STORE+=(--runroot "$CONTAINERS_RUNROOT")
bah() { buildah "${STORE[@]}" "$@"; }

command -v buildah >/dev/null || { echo "buildah is not installed (apt-get install buildah)"; exit 1; }
[ -x "$REGISTRY_BIN" ] || { echo "no registry binary at $REGISTRY_BIN"; exit 1; }
BINS=("$REGISTRY_BIN")
if [ -x "$K8S_SYNC_BIN" ]; then
    BINS+=("$K8S_SYNC_BIN")
else
    echo "note: no k8s-sync binary at $K8S_SYNC_BIN; the image carries registry only"
fi

ROOTFS=$(mktemp -d /tmp/registry-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS" "$ROOTFS.tar"; [ -n "${CTR:-}" ] && bah rm "$CTR" >/dev/null 2>&1 || true' EXIT

mkdir -p "$ROOTFS"/{usr/local/bin,etc,data,tmp,registry/config}
for bin in "${BINS[@]}"; do
    dest=$ROOTFS/usr/local/bin/$(basename "$bin")
    objcopy --strip-debug "$bin" "$dest"
    chmod 0755 "$dest"
    # Every shared library the binary loads, at the path the dynamic loader looks for it.
    ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}' | while read -r lib; do
        [ -e "$ROOTFS$lib" ] && continue
        mkdir -p "$ROOTFS$(dirname "$lib")"
        cp -L "$lib" "$ROOTFS$lib"
    done
done
cat >"$ROOTFS/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
registry:x:100:1000:registry:/data:/usr/sbin/nologin
PASSWD
cat >"$ROOTFS/etc/group" <<'GROUP'
root:x:0:
registry:x:1000:
GROUP
echo "hosts: files dns" >"$ROOTFS/etc/nsswitch.conf"
chown 100:1000 "$ROOTFS/data"
chmod 2775 "$ROOTFS/data"
chmod 1777 "$ROOTFS/tmp"

CTR=$(bah from scratch)
# One layer from a tar of the tree: unlike a copy, an added archive keeps owners and modes
# (/data belongs to the registry user).
tar -C "$ROOTFS" --numeric-owner -cf "$ROOTFS.tar" .
bah add --quiet "$CTR" "$ROOTFS.tar" / >/dev/null
rm -f "$ROOTFS.tar"
bah config \
    --user 100:1000 \
    --workingdir /data \
    --volume /data \
    --env PATH=/usr/local/bin:/usr/bin:/bin \
    --port 8500 --port 8600 --port 8600/udp --port 8300 --port 8301 --port 8301/udp --port 8080 \
    --entrypoint '["/usr/local/bin/registry"]' \
    --cmd '["agent", "-dev", "-client=0.0.0.0"]' \
    --label org.opencontainers.image.title=registry \
    --label org.opencontainers.image.description="Consul-compatible service registry" \
    --label org.opencontainers.image.licenses=MPL-2.0 \
    "$CTR"
bah commit --quiet --rm "$CTR" "$TAG" >/dev/null
CTR=
echo "built $TAG ($(bah images --format '{{.Size}}' "$TAG"))"
if [ -n "$ARCHIVE" ]; then
    bah push --quiet "$TAG" "oci-archive:$ARCHIVE:$TAG"
    echo "wrote $ARCHIVE"
fi
