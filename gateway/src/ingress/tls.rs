//! The ingress TLS configuration: the server's certificate, client certificates required and verified
//! against the configured CA bundle with CRLs (rustls' `WebPkiClientVerifier`; never unauthenticated),
//! TLS 1.3 unless 1.2 is explicitly allowed.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {why}", path.display())]
pub struct TlsError {
    /// Which part.
    pub what: &'static str,
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    pub why: String,
}

fn bad(what: &'static str, path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError {
        what,
        path: path.to_owned(),
        why: why.to_string(),
    }
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let all = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(what, path, e))?;
    if all.is_empty() {
        return Err(bad(what, path, "no certificate in it"));
    }
    Ok(all)
}

/// The crypto provider of every TLS connection of the node: aws-lc-rs, whose key exchange groups
/// put the post-quantum hybrid X25519MLKEM768 first (rustls' `prefer-post-quantum`) and keep X25519,
/// P-256 and P-384 for clients without it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server configuration from the configured files.
pub fn server_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certs("server certificate", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| bad("server key", &tls.key, e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs("client CA bundle", &tls.client_ca)? {
        roots
            .add(ca)
            .map_err(|e| bad("client CA bundle", &tls.client_ca, e))?;
    }
    let mut crls = Vec::new();
    for path in &tls.crls {
        for crl in
            CertificateRevocationListDer::pem_file_iter(path).map_err(|e| bad("CRL", path, e))?
        {
            crls.push(crl.map_err(|e| bad("CRL", path, e))?);
        }
    }
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .with_crls(crls)
            .build()
            .map_err(|e| bad("client verifier", &tls.client_ca, e))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| bad("TLS versions", &tls.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("server certificate", &tls.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
