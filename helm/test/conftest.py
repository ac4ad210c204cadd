"""Shared fixtures of the chart tests: the helm binaries, rendering the chart, the registry
binary. Under REGISTRY_TESTS_STRICT=1 a missing tool is an error, never a skip."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "helm" / "registry"
STRICT = os.environ.get("REGISTRY_TESTS_STRICT") == "1"


def need(path, what):
    """The path of a tool the test needs, or a failure (strict) / skip (local)."""
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return str(path)
    message = f"{what} not found ({path!r})"
    if STRICT:
        pytest.fail(message)
    pytest.skip(message)


def helm_bin():
    return need(os.environ.get("HELM_BIN") or shutil.which("helm"), "helm (HELM_BIN)")


def render(values=None, files=(), release="rel", namespace="ns1", helm=None):
    """`helm template` of the chart; returns the list of objects."""
    helm = helm or helm_bin()
    cmd = [helm, "template", release, str(CHART), "--namespace", namespace]
    for f in files:
        cmd += ["-f", str(f)]
    extra = None
    if values is not None:
        extra = Path(tempfile.gettempdir()) / f"registry-chart-values-{os.getpid()}.yaml"
        extra.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(extra)]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"helm template failed: {e.stderr}") from e
    finally:
        if extra is not None:
            extra.unlink(missing_ok=True)
    return [d for d in yaml.safe_load_all(out) if d]


def render_error(values):
    """The error of a render that must fail."""
    helm = helm_bin()
    extra = Path(tempfile.gettempdir()) / f"registry-chart-values-{os.getpid()}.yaml"
    extra.write_text(yaml.safe_dump(values))
    try:
        p = subprocess.run([helm, "template", "rel", str(CHART), "-f", str(extra)],
                           capture_output=True, text=True)
    finally:
        extra.unlink(missing_ok=True)
    assert p.returncode != 0, f"render of {values} succeeded but must fail"
    return p.stderr


def find(objs, kind, suffix=None):
    """The one object of that kind (whose name ends with suffix)."""
    found = [o for o in objs if o["kind"] == kind
             and (suffix is None or o["metadata"]["name"].endswith(suffix))]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{suffix}"
    return found[0]


def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


@pytest.fixture
def registry_bin():
    path = os.environ.get("REGISTRY_BIN")
    if not path:
        for profile in ("debug", "release"):
            cand = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / profile / "registry"
            if cand.is_file():
                path = str(cand)
                break
    return need(path, "registry binary (REGISTRY_BIN)")
