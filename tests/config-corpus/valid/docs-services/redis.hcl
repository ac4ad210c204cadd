service {
  id      = "redis"
  name    = "redis"
  tags    = ["primary"]
  address = "127.0.0.1"
  port    = 8000
  check {
    id       = "redis-tcp"
    name     = "Redis TCP"
    tcp      = "127.0.0.1:8000"
    interval = "10s"
    timeout  = "1s"
  }
}
