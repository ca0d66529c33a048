//! Raw TLS connections for the abuse tests: bytes written exactly as the test says, from any loopback
//! source address, and a minimal HTTP/1.1 response reader, so that a test can stall, truncate or
//! oversize a request the way an attacker would (a well-behaved client library would not).

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A TLS stream over a blocking socket.
pub type Tls = StreamOwned<ClientConnection, std::net::TcpStream>;

/// A TCP connection to `addr` from `source` (any 127.x.y.z address is this machine), blocking, with
/// reads that give up after `patience`.
pub fn tcp_from(
    source: IpAddr,
    addr: SocketAddr,
    patience: Duration,
) -> std::io::Result<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    })?;
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    std.set_read_timeout(Some(patience))?;
    Ok(std)
}

/// A TLS connection as `who` of `pki` (its `<who>.pem`/`.key`, trusting `ca.pem`), from `source`,
/// offering `alpn`; the handshake is completed before it returns.
pub fn tls_from(
    pki: &Path,
    who: &str,
    source: IpAddr,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.pem")).map_err(std::io::Error::other)? {
        roots
            .add(c.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let chain = CertificateDer::pem_file_iter(pki.join(format!("{who}.pem")))
        .map_err(std::io::Error::other)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(pki.join(format!("{who}.key")))
        .map_err(std::io::Error::other)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(std::io::Error::other)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp_from(source, addr, Duration::from_secs(10))?);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// An HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (by Content-Length, or to the end of the connection).
    pub body: String,
}

impl RawAnswer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Reads one response from `stream`; `None` if the connection ended (or timed out) before a whole
/// response head arrived.
pub fn read_answer(stream: &mut impl std::io::Read) -> Option<RawAnswer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(chunk.get(..n)?),
        }
    };
    let head = String::from_utf8_lossy(buf.get(..head_end)?).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf.get(head_end + 4..)?.to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    while length.is_none_or(|l| body.len() < l) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(chunk.get(..n)?),
        }
    }
    Some(RawAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Writes `bytes`, ignoring a connection the server already closed (it may answer and close before
/// an oversized request is fully sent).
pub fn write_lossy(stream: &mut impl std::io::Write, bytes: &[u8]) {
    let _ = stream.write_all(bytes).and_then(|()| stream.flush());
}

/// Whether the server closed the connection (a read returns end of file or an error) within
/// `patience`; sends nothing.
pub fn closed_within(stream: &mut Tls, patience: Duration) -> bool {
    let _ = stream.sock.set_read_timeout(Some(patience));
    let mut b = [0u8; 1];
    !matches!(stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
}
