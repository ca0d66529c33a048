//! The development PKI that `gateway init` makes: a CA, the server's certificate, provider, officer,
//! registry and revoked-provider client certificates, and a CRL listing the revoked one. For development and tests
//! only: production nodes use the operator's own PKI (see the README).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::files::{write_private, write_public};

/// The trust domain of development SPIFFE ids.
pub const TRUST_DOMAIN: &str = "ledgergate.local";

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// Writing a file failed.
    #[error(transparent)]
    Write(#[from] crate::files::FileError),
}

/// The SPIFFE id of a development provider.
pub fn provider_uri(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/provider/{name}")
}

fn generate(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

/// Certificates are valid from a day ago (clock skew) for two years.
fn validity(p: &mut CertificateParams, now: OffsetDateTime) {
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(730);
}

/// A client certificate for `cn`, with a provider SPIFFE id when `uri` is given.
fn client(
    cn: &str,
    uri: Option<String>,
    serial: u64,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
) -> Result<(String, KeyPair), PkiError> {
    let key = KeyPair::generate().map_err(generate(cn))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(uri) = uri {
        let uri = uri.try_into().map_err(generate(cn))?;
        p.subject_alt_names = vec![SanType::URI(uri)];
    }
    p.serial_number = Some(SerialNumber::from(serial));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut p, now);
    let cert = p.signed_by(&key, issuer).map_err(generate(cn))?;
    Ok((cert.pem(), key))
}

/// Writes the development PKI into `dir` (which must not hold one yet): `ca.pem ca.key server.pem
/// server.key provider-a.* provider-b.* officer.* revoked.* registry.* crl.pem`. Keys are written 0600.
pub fn make_dev_pki(dir: &Path, now: OffsetDateTime) -> Result<(), PkiError> {
    let ca_key = KeyPair::generate().map_err(generate("the CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Ledgergate development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(SerialNumber::from(1u64));
    validity(&mut ca, now);
    let ca_cert = ca.self_signed(&ca_key).map_err(generate("the CA"))?;
    write_public(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().map_err(generate("the server key"))?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(generate("the server"))?;
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.serial_number = Some(SerialNumber::from(2u64));
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, now);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(generate("the server"))?;
    write_public(&dir.join("server.pem"), server_cert.pem().as_bytes())?;
    write_private(
        &dir.join("server.key"),
        server_key.serialize_pem().as_bytes(),
    )?;

    let clients = [
        ("provider-a", Some(provider_uri("provider-a")), 10u64),
        ("provider-b", Some(provider_uri("provider-b")), 11),
        ("officer", None, 12),
        ("revoked", Some(provider_uri("revoked")), 13),
        ("registry", None, 14),
    ];
    for (name, uri, serial) in clients {
        let (pem, key) = client(name, uri, serial, &issuer, now)?;
        write_public(&dir.join(format!("{name}.pem")), pem.as_bytes())?;
        write_private(
            &dir.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
        )?;
    }

    let crl = CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(13u64),
            revocation_time: now - Duration::hours(1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .map_err(generate("the CRL"))?;
    write_public(
        &dir.join("crl.pem"),
        crl.pem().map_err(generate("the CRL"))?.as_bytes(),
    )?;
    Ok(())
}
