//! `https` as Convex deployments serve it: TLS with a certificate chain the client verifies
//! (here a CA the emulator makes and writes to a file), and HTTP/2 negotiated by ALPN, with
//! HTTP/1.1 still offered.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use convex_emulator::{Config, EmulatorServer, GenerateSpec};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn trusted_roots(emu: &EmulatorServer) -> RootCertStore {
    let pem = std::fs::read(emu.ca_file().expect("a CA file")).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// Connects with TLS and answers (negotiated ALPN protocol, status, body) of one GET.
async fn get(
    emu: &EmulatorServer,
    config: Arc<ClientConfig>,
    path: &str,
) -> (Vec<u8>, u16, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let req = hyper::Request::get(format!("{}{path}", emu.url()))
        .header("Authorization", format!("Convex {}", emu.access_key()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (alpn, status, body)
}

fn start_tls() -> EmulatorServer {
    EmulatorServer::start(Config {
        tls: true,
        generate: GenerateSpec {
            tables: 1,
            docs: 5,
            ..GenerateSpec::default()
        },
        ..Config::default()
    })
    .unwrap()
}

/// A client that trusts the emulator's CA negotiates HTTP/2 by ALPN and gets the same
/// answers as over plain HTTP; a client offering only HTTP/1.1 gets HTTP/1.1.
#[tokio::test]
async fn https_serves_http2_by_alpn_and_http1_too() {
    let emu = start_tls();
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let path = "/api/list_snapshot?tableName=users&format=json";
    let (alpn, status, body) = get(
        &emu,
        client_config(trusted_roots(&emu), &[b"h2", b"http/1.1"]),
        path,
    )
    .await;
    assert_eq!(alpn, b"h2");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["values"].as_array().unwrap().len(), 5);
    assert_eq!(
        page["values"],
        serde_json::json!(emu.deployment().live_documents("", "users"))
    );

    let (alpn, status, _) = get(
        &emu,
        client_config(trusted_roots(&emu), &[b"http/1.1"]),
        path,
    )
    .await;
    assert_eq!(alpn, b"http/1.1");
    assert_eq!(status, 200);
}

/// Verification stays on: a client that does not trust the emulator's CA fails the
/// handshake.
#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake() {
    let emu = start_tls();
    let tcp = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    let config = client_config(RootCertStore::empty(), &[b"h2"]);
    let name = ServerName::try_from("localhost").unwrap();
    let err = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// `convex-emulator --tls` prints the https URL and the CA file in its startup line.
#[test]
fn binary_tls_flag_prints_the_ca_file() {
    let (mut child, info) = common::spawn_binary(
        env!("CARGO_BIN_EXE_convex-emulator"),
        &["--port", "0", "--tls"],
    );
    assert!(
        info["url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{info}"
    );
    let pem = std::fs::read_to_string(info["ca_file"].as_str().unwrap()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    child.kill().unwrap();
    child.wait().unwrap();
}
