server = true
bootstrap_expect = 1
limits {
  rpc_handshake_timeout = "five seconds"
}
