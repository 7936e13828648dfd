//! Test harness: real registries on loopback, a token server and a fault-injecting proxy.
