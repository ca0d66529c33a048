//! A node on an existing PKI made with OpenSSL (not rcgen): the README's instructions, as a test.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use e2e::client::Client;
use e2e::node::{Node, init_node};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed by .ci/run");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's "Use your own PKI" steps: a CA, a server certificate, a provider certificate.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Example Org CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let issue = |name: &str, subj: &str, ext: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subj,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "30",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    };
    issue(
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        "bank",
        "/CN=provider-a",
        "subjectAltName=URI:spiffe://ledgergate.local/provider/provider-a\nextendedKeyUsage=clientAuth\n",
    );
}

#[test]
fn certificates_made_with_openssl_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let pki = tmp.path().join("org-pki");
    std::fs::create_dir(&pki).unwrap();
    make_pki(&pki);
    let config = std::fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    let p = pki.display();
    let config = config
        .replace("cert: pki/server.pem", &format!("cert: {p}/server.pem"))
        .replace("key: pki/server.key", &format!("key: {p}/server.key"))
        .replace("client_ca: pki/ca.pem", &format!("client_ca: {p}/ca.pem"))
        .replace("crls: [pki/crl.pem]", "crls: []");
    std::fs::write(dir.join("gateway.yaml"), config).unwrap();
    let node = Node::start(&dir);
    let cert = std::fs::read_to_string(pki.join("bank.pem")).unwrap();
    let key = std::fs::read_to_string(pki.join("bank.key")).unwrap();
    let bank = Client::from_pem(&pki.join("ca.pem"), Some((&cert, &key)));
    let body = br#"{"type":"loan_application","id":"O-1","fields":{"applicant_id":"P-1","amount":10,"currency":"EUR"}}"#;
    let answer = bank
        .request(node.addr, "POST", "/v1/records", Some(body))
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.text());
    // A certificate from the development CA is a stranger to this node now.
    let dev = dir.join("pki");
    let dev_cert = std::fs::read_to_string(dev.join("provider-a.pem")).unwrap();
    let dev_key = std::fs::read_to_string(dev.join("provider-a.key")).unwrap();
    let outsider = Client::from_pem(&pki.join("ca.pem"), Some((&dev_cert, &dev_key)));
    let err = outsider
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
}
