"""Runs the containers of rendered pod specs as real processes, the way a kubelet would, but
without Kubernetes: each pod gets its own network namespace on a test bridge (its pod IP), its
own UTS namespace (hostname = pod name), a root directory with the image's layout in which
its volumes are mounted at their mountPaths (ConfigMaps with the rendered data, emptyDirs and
volume claims as fresh directories owned by fsGroup), the container's env with the downward
API filled in and $(VAR) references expanded, and runAsUser/runAsGroup applied. The cluster
DNS is an /etc/hosts in each pod mapping every pod's DNS name to its IP.

Nothing leaves the machine: the bridge has no uplink and no route is added.
"""
import os
import re
import shutil
import socket
import threading
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Where the image (helm/image/) puts things, and the host paths that provide them here.
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"
HOST_LIB_DIRS = ["/lib", "/lib64", "/usr/lib"]

LAUNCH = r"""
set -e
root=$1; shift
hostname "$SIM_HOSTNAME"
mount --bind "$root" "$root"
while [ "$1" != "--" ]; do
    src=$1 dst=$2 mode=$3; shift 3
    mount --bind "$src" "$root$dst"
    if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$dst"; fi
done
shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -o remount,bind,ro "$root"
exec "$@"
"""


def expand(text, env):
    """Kubernetes' $(VAR) expansion of command, args and env values; $$ escapes."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


@dataclass
class Pod:
    name: str
    ip: str
    netns: str
    root: Path
    env: dict
    command: list
    mounts: list  # (host dir, mountPath, "ro"|"rw")
    user: str
    log: Path
    container: dict
    proc: subprocess.Popen = None
    extra: dict = field(default_factory=dict)
    # Init containers: (name, command, env, mounts, user, workingDir).
    init: list = field(default_factory=list)

    def launcher(self, argv, env, mounts=None, user=None, workdir=None):
        spec = []
        for src, dst, mode in (self.mounts if mounts is None else mounts):
            spec += [str(src), dst, mode]
        kv = [f"{k}={v}" for k, v in env.items()]
        user = user or self.user
        if workdir:
            uid, gid = user.split(":")
            enter = ["unshare", f"--root={self.root}", f"--wd={workdir}", f"--setgid={gid}",
                     f"--setuid={uid}"]
        else:
            enter = ["/usr/sbin/chroot", f"--userspec={user}", str(self.root)]
        return (["ip", "netns", "exec", self.netns, "unshare", "--uts", "--",
                 "env", f"SIM_HOSTNAME={self.name}", "sh", "-c", LAUNCH, "sh", str(self.root)]
                + spec + ["--", "env", "-i"] + kv + enter + argv)

    def start(self):
        for name, argv, env, mounts, user, workdir in self.init:
            r = subprocess.run(self.launcher(argv, env, mounts, user, workdir),
                               capture_output=True, text=True, timeout=60)
            with open(self.log, "a") as log:
                log.write(f"--- init container {name}\n{r.stdout}{r.stderr}")
            assert r.returncode == 0, f"init container {name} of {self.name}: {r.stderr}"
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.launcher(self.command, self.env), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def exec(self, argv, timeout=10):
        """`kubectl exec`: argv in the pod's namespaces, root and env."""
        return subprocess.run(self.launcher(argv, self.env), capture_output=True, text=True,
                              timeout=timeout)

    def probe(self, kind):
        """Runs the container's readinessProbe or livenessProbe once: True if it succeeds."""
        p = self.container[kind]
        if "exec" in p:
            try:
                return self.exec(p["exec"]["command"], timeout=p.get("timeoutSeconds", 1)).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        if "httpGet" in p:
            port = p["httpGet"]["port"]
            if isinstance(port, str):
                port = next(cp["containerPort"] for cp in self.container["ports"]
                            if cp["name"] == port)
            scheme = p["httpGet"].get("scheme", "HTTP").lower()
            url = f"{scheme}://{self.ip}:{port}{p['httpGet'].get('path', '/')}"
            # The kubelet does not verify the certificate of an HTTPS probe.
            ctx = ssl._create_unverified_context() if scheme == "https" else None
            try:
                with urllib.request.urlopen(url, timeout=p.get("timeoutSeconds", 1),
                                            context=ctx) as r:
                    return 200 <= r.status < 400
            except Exception:
                return False
        raise AssertionError(f"unsupported probe {p}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=10)
            except Exception:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)

    def logs(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Node:
    """One 'node': a bridge in the root namespace holding the pods' network namespaces."""

    def __init__(self, binaries, namespace="ns1"):
        # binaries: image path -> host path of the executable (e.g. the registry binary)
        self.binaries = binaries
        self.namespace = namespace
        self.tag = f"{os.getpid() % 250:x}"
        self.subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
        self.bridge = f"rgsim{self.tag}"
        self.host_ip = f"{self.subnet}.1"
        self.dir = Path(tempfile.mkdtemp(prefix="podsim-"))
        self.pods = []
        self._listeners = []
        self.dns = {}  # DNS name -> [IP]
        self._next = 10
        # Leftovers of an earlier run of a process with the same pid tag (a killed test).
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                 text=True).stdout.split("\n"):
            if ns.startswith(f"rgsim{self.tag}-"):
                subprocess.run(["ip", "netns", "del", ns.split()[0]], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self._run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge])
        self._run(["ip", "link", "set", self.bridge, "up"])

    @staticmethod
    def _run(cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    def allocate(self, name):
        ip = f"{self.subnet}.{self._next}"
        self._next += 1
        netns = f"rgsim{self.tag}-{len(self.pods)}"
        veth = f"rgv{self.tag}x{len(self.pods)}"
        self._run(["ip", "netns", "add", netns])
        self._run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                   "netns", netns])
        self._run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        self._run(["ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        self._run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        self._run(["ip", "-n", netns, "link", "set", "lo", "up"])
        return ip, netns

    def add_dns(self, name, ip):
        self.dns.setdefault(name, []).append(ip)

    def write_dns(self):
        """The cluster DNS: every pod's /etc/hosts gets every name."""
        lines = ["127.0.0.1 localhost"]
        for name, ips in sorted(self.dns.items()):
            for ip in ips:
                lines.append(f"{ip} {name} {name}.cluster.local")
        for pod in self.pods:
            etc = pod.root / "etc"
            (etc / "hosts").write_text("\n".join(lines + [f"{pod.ip} {pod.name}"]) + "\n")

    def create_pod(self, name, pod_spec, configmaps, claims=(), container="registry",
                   entrypoint=(), secrets=None):
        """Prepares a pod from a rendered pod spec (not started yet). `entrypoint` is the
        image's ENTRYPOINT, used when the container sets no command (as Kubernetes does).
        `secrets` ({name: {key: value}}) are the cluster's Secrets that secretKeyRef env vars
        and secret volumes read; a missing one fails as the kubelet would not start the pod."""
        secrets = secrets or {}
        c = next(x for x in pod_spec["containers"] if x["name"] == container)
        ip, netns = self.allocate(name)
        pdir = self.dir / name
        root = pdir / "root"
        for d in ["etc", "tmp", "proc", "dev"] + [p.lstrip("/") for p in HOST_LIB_DIRS]:
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "nsswitch.conf").write_text("hosts: files\n")
        (root / "etc" / "resolv.conf").write_text("options timeout:1 attempts:1\n")
        (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/false\nregistry:x:100:1000::/data:/bin/false\n")
        (root / "etc" / "group").write_text("root:x:0:\nregistry:x:1000:\n")
        mounts = [(d, d, "ro") for d in HOST_LIB_DIRS if os.path.isdir(d)]
        for image_path, host_path in self.binaries.items():
            target = root / image_path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
            mounts.append((host_path, image_path, "ro"))
        base_mounts = mounts
        sc = pod_spec.get("securityContext", {})
        fs_group = sc.get("fsGroup")
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        field_values = {"status.podIP": ip, "metadata.name": name,
                        "metadata.namespace": self.namespace, "spec.nodeName": "node-1",
                        "status.hostIP": self.host_ip}

        def prepare(c):
            """(command, env, mounts, user) of one container of the pod."""
            mounts = list(base_mounts)
            uid = c.get("securityContext", {}).get("runAsUser", sc.get("runAsUser", 0))
            gid = c.get("securityContext", {}).get("runAsGroup", sc.get("runAsGroup", uid))
            for vm in c.get("volumeMounts", []):
                vol = volumes.get(vm["name"])
                host = pdir / "volumes" / vm["name"]
                host.mkdir(parents=True, exist_ok=True)
                if vol is None:
                    assert vm["name"] in claims, f"volumeMount {vm['name']} has no volume"
                elif "configMap" in vol:
                    data = configmaps[vol["configMap"]["name"]]["data"]
                    items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                    for it in items:
                        (host / it["path"]).write_text(data[it["key"]])
                elif "secret" in vol:
                    name_ = vol["secret"]["secretName"]
                    assert name_ in secrets, f"secret {name_} of volume {vm['name']} does not exist"
                    data = secrets[name_]
                    items = vol["secret"].get("items") or [{"key": k, "path": k} for k in data]
                    for it in items:
                        (host / it["path"]).write_text(data[it["key"]])
                elif "emptyDir" in vol or "hostPath" in vol:
                    pass
                else:
                    raise AssertionError(f"volume type of {vol} not simulated")
                if fs_group is not None:
                    subprocess.run(["chown", "-R", f"{uid}:{fs_group}", str(host)], check=True)
                    subprocess.run(["chmod", "-R", "g+rwX", str(host)], check=True)
                    os.chmod(host, 0o2775)
                (root / vm["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
                mounts.append((host, vm["mountPath"], "ro" if vm.get("readOnly") else "rw"))
            env = {"PATH": IMAGE_PATH, "HOSTNAME": name}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = expand(str(e["value"]), env)
                elif "secretKeyRef" in e["valueFrom"]:
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert ref["key"] in secrets.get(ref["name"], {}), \
                        f"env {e['name']}: secret {ref['name']} has no key {ref['key']}"
                    env[e["name"]] = secrets[ref["name"]][ref["key"]]
                else:
                    env[e["name"]] = field_values[e["valueFrom"]["fieldRef"]["fieldPath"]]
            command = [expand(a, env) for a in (c.get("command") or list(entrypoint))
                       + c.get("args", [])]
            return command, env, mounts, f"{uid}:{gid}", uid

        command, env, mounts, user, uid = prepare(c)
        # Init containers run to completion, in order, before the container (Pod.start).
        init = []
        for ic in pod_spec.get("initContainers", []):
            icmd, ienv, imounts, iuser, _ = prepare(ic)
            init.append((ic["name"], icmd, ienv, imounts, iuser, ic.get("workingDir")))
        pod = Pod(name=name, ip=ip, netns=netns, root=root, env=env, command=command,
                  mounts=mounts, user=user, log=pdir / "log", container=c, init=init)
        self.pods.append(pod)
        return pod

    def host_port(self, pod, port):
        """A container's TCP hostPort: connections to the node's host IP on `port` reach the
        pod (a forwarder in the root namespace, as the CNI's hostPort rules would)."""
        listener = socket.create_server((self.host_ip, port))
        self._listeners.append(listener)

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def accept():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    upstream = socket.create_connection((pod.ip, port), timeout=5)
                except OSError:
                    conn.close()
                    continue
                upstream.settimeout(None)
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()

    def wait(self, check, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.logs()[-3000:]}" for p in self.pods)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    def close(self):
        for listener in self._listeners:
            listener.close()
        for p in self.pods:
            p.stop()
        for p in self.pods:
            subprocess.run(["ip", "netns", "del", p.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
