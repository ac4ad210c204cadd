server           = true
bootstrap_expect = 1
domain           = "consul"
recursors        = ["127.0.0.1:53"]

dns_config {
  allow_stale        = true
  max_stale          = "87600h"
  node_ttl           = "30s"
  service_ttl = {
    "*" = "10s"
  }
  enable_truncate    = true
  only_passing       = true
  recursor_timeout   = "2s"
  udp_answer_limit   = 3
  a_record_limit     = 3
  disable_compression = false
  enable_additional_node_meta_txt = true
  soa {
    min_ttl = 60
  }
}
