server           = true
bootstrap_expect = 1
verify_incoming        = false
verify_outgoing        = true
verify_server_hostname = true
ca_file                = "/etc/consul.d/consul-agent-ca.pem"
cert_file              = "/etc/consul.d/dc1-server-consul-0.pem"
key_file               = "/etc/consul.d/dc1-server-consul-0-key.pem"

tls {
  defaults {
    ca_file         = "/etc/consul.d/consul-agent-ca.pem"
    cert_file       = "/etc/consul.d/dc1-server-consul-0.pem"
    key_file        = "/etc/consul.d/dc1-server-consul-0-key.pem"
    verify_incoming = true
    verify_outgoing = true
    tls_min_version = "TLSv1_2"
  }
  internal_rpc {
    verify_server_hostname = true
  }
  https {
    verify_incoming = false
  }
}

auto_encrypt {
  allow_tls = true
}

ports {
  https = 8501
}
