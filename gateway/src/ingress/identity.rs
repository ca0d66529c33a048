//! Who is on the other end: the verified client certificate, read into a policy `PeerIdentity`.

use policies::PeerIdentity;
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;

/// The identity in a (verified) client certificate, from its DER bytes. `None` if it cannot be parsed,
/// which the TLS layer's verification makes unreachable in practice.
pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut san_uris = Vec::new();
    let mut san_dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => san_uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => san_dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    Some(PeerIdentity {
        cn,
        san_uris,
        san_dns,
        fingerprint: hex::encode(Sha256::digest(der)),
    })
}
