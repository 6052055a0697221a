//! A whole sync over `https`, as Convex Cloud serves it: the emulator's certificate is signed by
//! a CA of its own, which the connector trusts only through the standard `SSL_CERT_FILE` (no
//! switch turns verification off), and HTTP/2 is negotiated by ALPN.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{assert_matches_live, Harness};
use convex_emulator::{apply_changes, GenerateSpec};

fn generated() -> GenerateSpec {
    GenerateSpec {
        tables: 2,
        docs: 300,
        components: true,
        ..GenerateSpec::default()
    }
}

#[test]
fn a_full_sync_over_tls_trusts_the_ca_in_ssl_cert_file() {
    let h = Harness::tls(generated());
    assert!(h.emu.url().starts_with("https://"), "{}", h.emu.url());
    let config = h.config();
    let check = h.run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(
        check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "{}",
        check.stdout
    );
    let catalog = h.catalog_all_columns("incremental");
    let first = h.read(&catalog, Some("[]"));
    first.assert_well_formed(h.emu.access_key());
    assert_eq!(first.code, 0, "{}", first.stdout);
    let versions: std::collections::BTreeSet<String> = h
        .dep()
        .request_log()
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        ["HTTP/2.0"],
        "HTTP/2 by ALPN"
    );
    apply_changes(h.dep(), 50, 3).unwrap();
    let second = h.read(&catalog, Some(&first.saved_state()));
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert_matches_live(&h, &[&first, &second]);
}

#[test]
fn without_the_ca_the_certificate_is_refused_as_a_config_error() {
    let mut h = Harness::tls(generated());
    h.bin.env.clear();
    let config = h.config();
    let check = h.run(&["check", "--config", config.to_str().unwrap()]);
    let status = &check.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED", "{}", check.stdout);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("SSL_CERT_FILE"), "{message}");
}
