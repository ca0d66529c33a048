//! A real TLS client for the black-box tests: HTTP/1.1 over rustls, with or without a client
//! certificate, reporting handshake refusals as the TLS alert the server sent.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// `x-request-id`, if any.
    pub request_id: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether it came over HTTP/2.
    pub http2: bool,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TLS client trusting one CA, presenting `identity` if given.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

impl Client {
    /// A client trusting `ca` and presenting the PEM chain and key, if any.
    pub fn from_pem(ca: &Path, identity: Option<(&str, &str)>) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Client {
            config: Arc::new(config),
        }
    }

    /// The same client speaking HTTP/2 (offered by ALPN).
    pub fn http2(&self) -> Client {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Client {
            config: Arc::new(config),
        }
    }

    /// A client presenting `<pki>/<who>.pem` and `.key`.
    pub fn for_identity(pki: &Path, who: &str) -> Client {
        let cert = std::fs::read_to_string(pki.join(format!("{who}.pem"))).unwrap();
        let key = std::fs::read_to_string(pki.join(format!("{who}.key"))).unwrap();
        Client::from_pem(&pki.join("ca.pem"), Some((&cert, &key)))
    }

    /// Submits one record (`POST /v1/records` with its JSON); panics only if no answer came back.
    pub fn submit(&self, addr: SocketAddr, record: &serde_json::Value) -> Answer {
        self.request(
            addr,
            "POST",
            "/v1/records",
            Some(record.to_string().as_bytes()),
        )
        .unwrap_or_else(|e| panic!("no answer to a submission: {e}"))
    }

    /// Sends one request on a new connection; `Err` carries the error chain (e.g. the TLS alert).
    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(self.send(addr, method, path, body))
    }

    /// A TLS connection to `addr` with this client's identity and ALPN offer.
    pub async fn tls(
        &self,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    }

    /// An HTTP/2 connection (the client must offer h2) on which many requests can be sent at once.
    pub async fn h2_sender(
        &self,
        addr: SocketAddr,
    ) -> Result<hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>, String> {
        let tls = self.tls(addr).await?;
        let exec = hyper_util::rt::TokioExecutor::new();
        let (sender, conn) = hyper::client::conn::http2::handshake(exec, TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn send(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let chain = |e: &dyn std::error::Error| {
            let mut s = e.to_string();
            let mut cur = e.source();
            while let Some(c) = cur {
                s.push_str(": ");
                s.push_str(&c.to_string());
                cur = c.source();
            }
            s
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| chain(&e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = connector.connect(name, tcp).await.map_err(|e| chain(&e))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let mut req = hyper::Request::builder().method(method);
        req = if h2 {
            req.uri(format!("https://localhost{path}"))
        } else {
            req.uri(path).header("host", "localhost")
        };
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(bytes::Bytes::copy_from_slice(
                body.unwrap_or_default(),
            )))
            .map_err(|e| e.to_string())?;
        let resp = if h2 {
            let exec = hyper_util::rt::TokioExecutor::new();
            let (mut sender, conn) = hyper::client::conn::http2::handshake(exec, TokioIo::new(tls))
                .await
                .map_err(|e| chain(&e))?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| chain(&e))?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| chain(&e))?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| chain(&e))?
        };
        let http2 = resp.version() == hyper::Version::HTTP_2;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (status, content_type, retry_after, request_id) = (
            resp.status().as_u16(),
            header("content-type").unwrap_or_default(),
            header("retry-after"),
            header("x-request-id"),
        );
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| chain(&e))?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            content_type,
            retry_after,
            request_id,
            body,
            http2,
        })
    }
}
