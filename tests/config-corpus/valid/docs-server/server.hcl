datacenter = "dc1"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "consul-server-1"
server = true
bootstrap_expect = 1
client_addr = "0.0.0.0"
bind_addr = "0.0.0.0"
advertise_addr = "127.0.0.1"
retry_join = ["127.0.0.1"]

ui_config {
  enabled = true
}

addresses {
  http = "0.0.0.0"
}

ports {
  grpc     = 8502
  https    = -1
  grpc_tls = -1
}

connect {
  enabled = true
}

performance {
  raft_multiplier = 1
}

leave_on_terminate      = false
skip_leave_on_interrupt = true
rejoin_after_leave      = true
disable_update_check    = true
