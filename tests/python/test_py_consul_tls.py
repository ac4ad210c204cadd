"""py-consul over HTTPS, with certificates made by `registry tls`: the CA from CONSUL_CACERT,
the address from CONSUL_HTTP_ADDR=https://..., and a client certificate for an agent with
`verify_incoming` (refused without one)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import consul
import pytest
import requests

from conftest import free_port, registry_bin, wait_for


@pytest.fixture
def tls_agent(tmp_path: Path, monkeypatch):
    binary = str(registry_bin())
    pki = tmp_path / "pki"
    pki.mkdir()
    for args in (["ca", "create"], ["cert", "create", "-server"], ["cert", "create", "-cli"]):
        subprocess.run([binary, "tls", *args], cwd=pki, check=True, capture_output=True)
    https_port = free_port()
    conf = tmp_path / "tls.hcl"
    conf.write_text(
        f"""
ports {{
  https = {https_port}
}}
tls {{
  https {{
    ca_file = "{pki}/consul-agent-ca.pem"
    cert_file = "{pki}/dc1-server-consul-0.pem"
    key_file = "{pki}/dc1-server-consul-0-key.pem"
    verify_incoming = true
  }}
}}
"""
    )
    args = [binary, "agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1",
            "-http-port", str(free_port()), "-dns-port", "-1",
            "-server-port", str(free_port()), "-serf-lan-port", str(free_port(udp_too=True)),
            "-serf-wan-port", str(free_port(udp_too=True)), "-config-file", str(conf)]
    log = tmp_path / "agent.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"https://127.0.0.1:{https_port}")
    monkeypatch.setenv("CONSUL_CACERT", str(pki / "consul-agent-ca.pem"))
    cert = (str(pki / "dc1-cli-consul-0.pem"), str(pki / "dc1-cli-consul-0-key.pem"))
    try:
        def up():
            if proc.poll() is not None:
                raise RuntimeError(log.read_text(errors="replace"))
            c = consul.Consul(verify=os.environ["CONSUL_CACERT"], cert=cert)
            return c.status.leader()
        wait_for("the HTTPS API", up, 30)
        yield cert
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_py_consul_over_https_with_cacert(tls_agent):
    cert = tls_agent
    c = consul.Consul(verify=os.environ["CONSUL_CACERT"], cert=cert)
    assert c.scheme == "https"
    assert c.kv.put("tls/key", "over-https")
    _, item = c.kv.get("tls/key")
    assert item["Value"] == b"over-https"
    assert c.agent.self()["Config"]["Datacenter"] == "dc1"


def test_py_consul_without_client_certificate_is_refused(tls_agent):
    c = consul.Consul(verify=os.environ["CONSUL_CACERT"])
    with pytest.raises(requests.exceptions.RequestException):
        c.kv.get("tls/key")
    # And a CA that is not the agent's is not trusted.
    c = consul.Consul(verify=True, cert=tls_agent)
    with pytest.raises(requests.exceptions.SSLError):
        c.status.leader()
