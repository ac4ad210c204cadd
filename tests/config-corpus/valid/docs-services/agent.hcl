server           = true
bootstrap_expect = 1
enable_local_script_checks = true
