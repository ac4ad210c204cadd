node_name  = "node-a"
node_id    = "ADF4238A-882B-9DDC-4A9D-5B6758E4159E"
datacenter = "East-1"
data_dir   = "/var/lib/registry"

client_addr    = "0.0.0.0"
bind_addr      = "10.0.0.5"
advertise_addr = "10.0.0.6"

ports {
  http     = 18500
  dns      = -1
  server   = 18300
  serf_lan = 18301
}

ports {
  serf_wan = 18302
  grpc     = 18502
}

server           = true
bootstrap        = false
bootstrap_expect = 3
retry_join       = ["10.0.0.7", "10.0.0.8"]
retry_join_wan   = ["192.168.0.1"]
start_join       = ["10.0.0.9"]
retry_interval   = "15s"
retry_max        = 4
log_level        = "warn"
log_json         = true
domain           = "Registry"

node_meta {
  rack = "r1"
  zone = "z2"
}

ui = false
ui_config {
  enabled      = true
  content_path = "/ui/"
}
enable_script_checks = true
encrypt              = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="

dns_config {
  allow_stale      = false
  max_stale        = "10s"
  node_ttl         = "30s"
  service_ttl      = { "*" = "5s", "web" = "1m" }
  only_passing     = true
  udp_answer_limit = 5
  a_record_limit   = 7
  enable_truncate  = true
}

recursors = ["8.8.8.8", "1.1.1.1:5353"]

raft_snapshot_threshold = 1000
raft_snapshot_interval  = "1m"
raft_trailing_logs      = 500

performance {
  raft_multiplier = 1
}

telemetry {
  prometheus_retention_time = "24h"
  disable_hostname          = true
}

service {
  name = "web"
  port = 80
  tags = ["v1"]
  check {
    http     = "http://localhost/health"
    interval = "10s"
  }
}

services {
  name = "db"
  port = 5432
  checks {
    tcp      = "localhost:5432"
    interval = "5s"
  }
}

services {
  name = "cache"
  port = 6379
}

check {
  id   = "mem"
  name = "Memory"
  ttl  = "30s"
}

checks = [
  {
    id   = "disk"
    name = "Disk"
    ttl  = "60s"
  }
]
