"""The container image built FROM scratch by helm/image/build.sh (buildah) out of the
registry binary under test and its shared libraries: podman runs `registry version` in it,
then a one-server agent as the image's non-root user with /data as the data dir, checked with
the readiness probe's own command through `podman exec`.

Podman runs here with the runc runtime, the vfs storage driver in a storage of the test's own,
no network, and ulimits no higher than this process's own (crun rejects this machine's hybrid
cgroup layout, and the default ulimits exceed its hard limits)."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CHART, ROOT, need

TAG = "localhost/registry-test:ci"


def tool(name):
    return need(shutil.which(name), f"{name} (apt-get install {name})")


@pytest.fixture
def store():
    d = Path(tempfile.mkdtemp(prefix="registry-image-"))
    yield d
    subprocess.run(["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
                    "--storage-driver", "vfs", "rm", "-af"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def podman(store, *args, check=True, timeout=60):
    hard_nofile = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True,
                                 text=True).stdout.strip()
    cmd = ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"),
           "--storage-driver", "vfs", "--runtime", tool("runc")] + list(args)
    if args and args[0] == "run":
        cmd[cmd.index("run") + 1:cmd.index("run") + 1] = [
            "--pull=never", "--network=none",
            f"--ulimit=nofile={hard_nofile}:{hard_nofile}", "--ulimit=nproc=4096:4096"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}"
    return p


def test_image_runs_registry(registry_bin, store):
    tool("buildah")
    tool("podman")
    env = dict(os.environ, CONTAINERS_ROOT=str(store / "root"),
               CONTAINERS_RUNROOT=str(store / "run"), STORAGE_DRIVER="vfs")
    build = subprocess.run(["bash", str(ROOT / "helm" / "image" / "build.sh"), "-t", TAG,
                            registry_bin], capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    print(build.stdout.strip())

    # The image's configuration is the Dockerfile's.
    cfg = podman(store, "image", "inspect", "--format",
                 "{{.Config.User}}|{{.Config.Entrypoint}}|{{.Config.WorkingDir}}", TAG).stdout
    assert cfg.strip() == "100:1000|[/usr/local/bin/registry]|/data", cfg

    out = podman(store, "run", "--rm", TAG, "version").stdout
    assert out.startswith("Registry v"), out

    # A server as the image's user, on the image's /data, ready by the chart's probe command.
    podman(store, "run", "-d", "--name", "srv", "--entrypoint", "/usr/local/bin/registry", TAG,
           "agent", "-server", "-bootstrap-expect=1", "-data-dir=/data", "-bind=127.0.0.1",
           "-client=127.0.0.1", "-node=srv")
    deadline = time.monotonic() + 60
    while True:
        probe = podman(store, "exec", "srv", "/usr/local/bin/registry", "operator", "raft",
                       "list-peers", "-http-addr=127.0.0.1:8500", check=False)
        if probe.returncode == 0:
            break
        state = podman(store, "ps", "-a", "--filter", "name=srv", "--format", "{{.Status}}").stdout
        if time.monotonic() > deadline or "Exited" in state:
            logs = podman(store, "logs", "srv", check=False)
            raise AssertionError(f"server not ready ({state}): {probe.stderr}\n{logs.stdout}{logs.stderr}")
        time.sleep(1)
    assert "srv" in probe.stdout and "leader" in probe.stdout, probe.stdout
    put = podman(store, "exec", "srv", "/usr/local/bin/registry", "kv", "put",
                 "-http-addr=127.0.0.1:8500", "image", "ok")
    assert "Success" in put.stdout, put.stdout
    # The agent process runs as uid 100 / gid 1000, not root.
    pid = podman(store, "inspect", "--format", "{{.State.Pid}}", "srv").stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uid = next(l.split()[1:] for l in status.splitlines() if l.startswith("Uid:"))
    gid = next(l.split()[1:] for l in status.splitlines() if l.startswith("Gid:"))
    assert set(uid) == {"100"} and set(gid) == {"1000"}, (uid, gid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [
        b"/usr/local/bin/registry", b"agent"]
    podman(store, "stop", "-t", "5", "srv")


def test_dockerfile_chart_and_scratch_image_agree():
    """The Dockerfile, the FROM-scratch build and the chart agree on the binary paths, the
    user and the data directory."""
    import yaml
    docker = (ROOT / "Dockerfile").read_text()
    script = (ROOT / "helm" / "image" / "build.sh").read_text()
    assert 'ENTRYPOINT ["/usr/local/bin/registry"]' in docker
    assert "--entrypoint '[\"/usr/local/bin/registry\"]'" in script
    assert "USER 100:1000" in docker and "--user 100:1000" in script
    assert "WORKDIR /data" in docker and "--workingdir /data" in script
    assert "/out/registry /out/k8s-sync /usr/local/bin/" in docker
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["server"]["securityContext"]["runAsUser"] == 100
    assert values["server"]["securityContext"]["runAsGroup"] == 1000
    assert values["global"]["image"] == "localhost/registry:0.1.0"
    assert 'TAG=localhost/registry:0.1.0' in script
