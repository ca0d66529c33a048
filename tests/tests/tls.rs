//! Post-quantum key exchange on the providers' and officers' TLS: a client that offers X25519MLKEM768
//! gets it, clients that only know classic groups (curl on OpenSSL 3.0, a rustls client limited to
//! X25519) are still served, and the node counts each handshake's group.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;

use e2e::node::{Node, init_node};
use rustls::NamedGroup;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `GET /v1/checkpoint` over a rustls connection whose key exchange groups are `groups` (all of the
/// provider's when `None`); the negotiated group and the status line.
fn checkpoint_with(node: &Node, groups: Option<&[NamedGroup]>) -> (NamedGroup, u16) {
    let pki = node.dir.join("pki");
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(groups) = groups {
        provider.kx_groups.retain(|g| groups.contains(&g.name()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join("provider-a.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("provider-a.key")).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = e2e::raw::tcp_from(HOME, node.addr, std::time::Duration::from_secs(10)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /v1/checkpoint HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let status = e2e::raw::read_answer(&mut tls).map_or(0, |a| a.status);
    let group = tls
        .conn
        .negotiated_key_exchange_group()
        .expect("a finished TLS 1.3 handshake has a group")
        .name();
    (group, status)
}

fn handshakes(node: &Node, group: &str) -> f64 {
    node.metric(&format!(
        "ledgergate_tls_handshakes_total{{group=\"{group}\"}}"
    ))
    .unwrap_or(0.0)
}

#[test]
fn post_quantum_key_exchange_is_preferred_and_classic_clients_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));

    // A client offering everything (rustls' default with aws-lc-rs) gets the hybrid.
    let (group, status) = checkpoint_with(&node, None);
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    assert_eq!(status, 200);
    // So does one that lists X25519 first: the server's preference decides.
    let (group, _) = checkpoint_with(
        &node,
        Some(&[NamedGroup::X25519, NamedGroup::X25519MLKEM768]),
    );
    assert_eq!(group, NamedGroup::X25519MLKEM768);

    // A client without it is served over X25519.
    let (group, status) = checkpoint_with(&node, Some(&[NamedGroup::X25519]));
    assert_eq!(group, NamedGroup::X25519);
    assert_eq!(status, 200);

    // curl on OpenSSL 3.0 (no ML-KEM) is served.
    let pki = node.dir.join("pki");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("provider-a.pem"))
        .arg("--key")
        .arg(pki.join("provider-a.key"))
        .arg(format!(
            "https://localhost:{}/v1/checkpoint",
            node.addr.port()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        handshakes(&node, "X25519"),
        2.0,
        "the rustls X25519 client and curl"
    );

    // The officer's CLI negotiates the hybrid too.
    let before = handshakes(&node, "X25519MLKEM768");
    assert_eq!(before, 2.0);
    let out = node.keymgr("officer", &["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(handshakes(&node, "X25519MLKEM768") > before);
    assert_eq!(handshakes(&node, "X25519"), 2.0);
}
