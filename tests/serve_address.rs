//! SPEC 3.16: whether a listen address is exposed beyond loopback and so needs a token
//! (T157–T159), through the public API.

use elastickv_metrics::serve::address_requires_token;

#[test]
fn t157_loopback_addresses_need_no_token() {
    for addr in [
        "localhost:9090",
        "LOCALHOST:1",
        "127.0.0.1:9090",
        "127.8.9.10:1",
        "[::1]:9090",
        "[::1]:",
        "[::ffff:127.0.0.1]:1",
        " 127.0.0.1:80 ",
    ] {
        assert!(!address_requires_token(addr), "{addr:?}");
    }
}

#[test]
fn t158_exposed_or_unknown_hosts_need_a_token() {
    for addr in [
        ":9090",
        "0.0.0.0:9090",
        "[::]:9090",
        "10.0.0.1:9090",
        "example.com:80",
        "localhost.:80",
        "[fe80::1%lo0]:80",
        "127.000.000.001:80",
    ] {
        assert!(address_requires_token(addr), "{addr:?}");
    }
}

#[test]
fn t159_addresses_without_a_port_need_a_token() {
    for addr in ["127.0.0.1", "[::1]", "::1", ""] {
        assert!(address_requires_token(addr), "{addr:?}");
    }
}
