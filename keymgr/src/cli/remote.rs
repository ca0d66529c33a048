//! The remote backend: a running gateway's admin API, over HTTPS with the officer's client certificate.
//! The node keeps its key store locked while it runs; this is how officers act on it meanwhile.

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use keymgr::{Backend, Command, Error, Outcome};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub(crate) struct Remote {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

fn unreachable(e: impl std::fmt::Display) -> Error {
    Error::Unreachable(e.to_string())
}

impl Remote {
    /// `url` is `https://HOST[:PORT]` (default port 8443).
    pub(crate) fn new(url: &str, cert: &Path, key: &Path, cacert: &Path) -> Result<Remote, Error> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| {
                Error::InvalidArgument(format!("--gateway {url}: expected https://HOST[:PORT]"))
            })?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| Error::InvalidArgument(format!("--gateway {url}: bad port")))?,
            ),
            None => (rest.to_owned(), 8443),
        };
        let file = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
            Error::InvalidArgument(format!("{what} {}: {e}", p.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cacert).map_err(|e| file("--cacert", cacert, &e))? {
            roots
                .add(c.map_err(|e| file("--cacert", cacert, &e))?)
                .map_err(|e| file("--cacert", cacert, &e))?;
        }
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file("--cert", cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file("--cert", cert, &e))?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file("--key", key, &e))?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(unreachable)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)
        .map_err(|e| file("--cert/--key", cert, &e))?;
        Ok(Remote {
            host,
            port,
            tls: Arc::new(tls),
        })
    }

    async fn post(&self, command: &Command) -> Result<Outcome, Error> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(unreachable)?;
        let name = ServerName::try_from(self.host.clone()).map_err(unreachable)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(unreachable)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(unreachable)?;
        tokio::spawn(conn);
        let body = serde_json::to_vec(command).map_err(unreachable)?;
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/admin/v1/keys")
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(unreachable)?;
        let resp = sender.send_request(req).await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(unreachable)?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| unreachable(format!("unexpected answer: {e}")));
        }
        let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |k: &str| {
            problem
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Err(Error::Remote {
            code: text("code"),
            detail: text("detail"),
        })
    }
}

impl Backend for Remote {
    fn execute(&mut self, command: Command, _actor: &str) -> Result<Outcome, Error> {
        // The gateway records the officer named by the client certificate, not a claimed --actor.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(unreachable)?;
        rt.block_on(self.post(&command))
    }
}
