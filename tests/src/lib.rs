//! Harness for black-box tests: starts real `registry` processes on loopback and talks to
//! them over HTTP, DNS and the CLI.
