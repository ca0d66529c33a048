//! `gateway init`: lay out a node's directory exactly as the contract says — development PKI, KEK
//! passphrase file, key store with the node's keys, example policies, an empty ledger, `gateway.yaml` —
//! so that `gateway serve` (and `quickstart`) can start from it. Never overwrites anything.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use keymgr::{KekSource, KeyManager, Purpose, Secret};

use crate::files::{FileError, private_dir, write_private, write_public};
use crate::ledger::{self, Ledger, LedgerConfig};

/// The log name of a development node.
pub const DEFAULT_ORIGIN: &str = "ledgergate.local/log";
/// Managed key names the gateway uses.
pub const PSEUDONYM_KEY: &str = "pseudonym";
/// See [`PSEUDONYM_KEY`].
pub const CHECKPOINT_KEY: &str = "checkpoint-signing";
/// See [`PSEUDONYM_KEY`].
pub const NODE_IDENTITY_KEY: &str = "node-identity";
/// See [`PSEUDONYM_KEY`].
pub const CHANNEL_STATIC_KEY: &str = "channel-static";

/// The example policies, as shipped in `policies/examples/`.
const EXAMPLE_POLICIES: [(&str, &str); 3] = [
    (
        "subjects.yaml",
        include_str!("../../policies/examples/subjects.yaml"),
    ),
    (
        "finance.yaml",
        include_str!("../../policies/examples/finance.yaml"),
    ),
    (
        "health.yaml",
        include_str!("../../policies/examples/health.yaml"),
    ),
];

const CONFIG: &str = r#"# Ledgergate node configuration, made by `gateway init`. Paths are relative to this file.
# Every option is documented in deploy/gateway.yaml.
listen: 127.0.0.1:8443
metrics_listen: 127.0.0.1:9464
tls:
  cert: pki/server.pem
  key: pki/server.key
  client_ca: pki/ca.pem
  crls: [pki/crl.pem]
policies: policies
data: data
kek:
  passphrase_file: kek.pass          # development only: production uses a prompt, a key file or an HSM
ledger:
  origin: ledgergate.local/log
"#;

/// Why a node directory could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The directory holds something, but not a complete node.
    #[error("{} exists but is not a complete node directory (no gateway.yaml); move it away or pick another --dir", .0.display())]
    Partial(PathBuf),
    /// A file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The PKI could not be made.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// The key store failed.
    #[error("key store")]
    Keys(#[from] keymgr::Error),
    /// The ledger failed.
    #[error("ledger")]
    Ledger(#[from] ledger::LedgerError),
    /// Something there would be overwritten.
    #[error("{0}")]
    Conflict(String),
}

/// What `init` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    /// The directory.
    pub dir: PathBuf,
    /// Whether it was made now (false: an existing node was found).
    pub created: bool,
    /// The checkpoint verifier key (C2SP vkey).
    pub vkey: String,
}

/// The KEK of a node made by `init`: its passphrase file.
pub fn dev_kek(dir: &Path) -> Result<KekSource, InitError> {
    let path = dir.join("kek.pass");
    let text = std::fs::read_to_string(&path).map_err(|e| FileError {
        path: path.clone(),
        why: format!("cannot read it: {e}"),
    })?;
    Ok(KekSource::Passphrase(Secret::new(
        text.trim_end().as_bytes().to_vec(),
    )))
}

/// The identity (`node-identity`'s public key) of the stopped development node at `dir`, read from
/// its key store with its development KEK.
pub fn read_node_identity(dir: &Path) -> Result<crate::channel::Identity, InitError> {
    let keys = KeyManager::open(&dir.join("data/keys"), &dev_kek(dir)?)?;
    let record = keys.show(NODE_IDENTITY_KEY)?;
    Ok(record
        .primary
        .and_then(|p| record.version(p))
        .and_then(|v| v.public_key.as_deref())
        .and_then(crate::channel::Identity::from_hex)
        .ok_or_else(|| {
            keymgr::Error::StoreCorrupt(format!("{NODE_IDENTITY_KEY}: no public key"))
        })?)
}

/// Makes the node directory at `dir`, or finds the complete one already there.
pub fn init(dir: &Path, now: time::OffsetDateTime, actor: &str) -> Result<NodeDir, InitError> {
    let config = dir.join("gateway.yaml");
    let t = now.unix_timestamp();
    if config.exists() {
        let keys = KeyManager::open(&dir.join("data/keys"), &dev_kek(dir)?)?;
        let vkey = crate::checkpoint_keys::signing(&keys, DEFAULT_ORIGIN, t)?
            .signer
            .map(|s| s.verifier().to_vkey())
            .unwrap_or_default();
        return Ok(NodeDir {
            dir: dir.to_owned(),
            created: false,
            vkey,
        });
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(InitError::Partial(dir.to_owned()));
    }
    private_dir(dir)?;
    private_dir(&dir.join("pki"))?;
    crate::pki::make_dev_pki(&dir.join("pki"), now)?;
    private_dir(&dir.join("policies"))?;
    for (name, text) in EXAMPLE_POLICIES {
        write_public(&dir.join("policies").join(name), text.as_bytes())?;
    }
    let passphrase = Secret::random(32).map_err(keymgr::Error::from)?;
    let text = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(passphrase.expose()),
    );
    write_private(
        &dir.join("kek.pass"),
        format!("{}\n", text.as_str()).as_bytes(),
    )?;
    private_dir(&dir.join("data"))?;
    let keys = KeyManager::init(&dir.join("data/keys"), &dev_kek(dir)?, t, actor)?;
    let day = 86_400;
    keys.create(
        PSEUDONYM_KEY,
        Purpose::Pseudonym,
        Some(30 * day),
        None,
        t,
        actor,
    )?;
    keys.create(
        CHECKPOINT_KEY,
        Purpose::CheckpointSigning,
        Some(180 * day),
        None,
        t,
        actor,
    )?;
    keys.create(
        NODE_IDENTITY_KEY,
        Purpose::NodeIdentity,
        Some(180 * day),
        None,
        t,
        actor,
    )?;
    keys.create(
        CHANNEL_STATIC_KEY,
        Purpose::ChannelStatic,
        Some(30 * day),
        None,
        t,
        actor,
    )?;
    let signing = crate::checkpoint_keys::signing(&keys, DEFAULT_ORIGIN, t)?;
    let vkey = signing
        .signer
        .as_ref()
        .map(|s| s.verifier().to_vkey())
        .unwrap_or_default();
    let ledger = Ledger::open_with(
        LedgerConfig::new(ledger::store_dir(&dir.join("data")), DEFAULT_ORIGIN),
        signing,
    )?;
    ledger.close();
    // Last: its presence marks a complete node directory.
    write_public(&config, CONFIG.as_bytes())?;
    Ok(NodeDir {
        dir: dir.to_owned(),
        created: true,
        vkey,
    })
}
