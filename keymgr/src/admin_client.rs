//! A client of a running gateway's admin API: HTTPS (TLS 1.3) with an officer's client
//! certificate. `keymgr --gateway` sends key commands with it; `gateway consortium` membership
//! changes.

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::Error;

/// A gateway's admin API, as one officer reaches it.
pub struct AdminClient {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn unreachable(e: impl std::fmt::Display) -> Error {
    Error::Unreachable(e.to_string())
}

impl AdminClient {
    /// `url` is `https://HOST[:PORT]` (default port 8443); `cert` and `key` are the officer's
    /// client certificate and key, `cacert` the CA that signed the gateway's certificate (PEM).
    pub fn new(url: &str, cert: &Path, key: &Path, cacert: &Path) -> Result<AdminClient, Error> {
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
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(unreachable)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)
        .map_err(|e| file("--cert/--key", cert, &e))?;
        Ok(AdminClient {
            host,
            port,
            tls: Arc::new(tls),
        })
    }

    /// Sends `method path` with a JSON `body` and reads the answer: its status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, bytes::Bytes), Error> {
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
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(unreachable)?;
        let resp = sender.send_request(req).await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(unreachable)?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends `method path` and reads a JSON answer; a refusal becomes [`Error::Remote`] with the
    /// problem's `code` and `detail`.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let (status, bytes) = self.request(method, path, body).await?;
        if (200..300).contains(&status) {
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
