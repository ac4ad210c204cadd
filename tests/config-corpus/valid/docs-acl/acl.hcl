server           = true
bootstrap_expect = 1

acl = {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
  tokens = {
    initial_management = "b1gs33cr3t"
    agent              = "e95b599e-166e-7d80-08ad-aee76e7ddf19"
    default            = "anonymous"
  }
}
