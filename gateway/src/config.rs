//! The node's configuration file (`gateway.yaml`): every option is in `deploy/gateway.yaml` with its
//! meaning. Paths are relative to the file's directory. Errors name file, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration, with paths resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where providers and officers connect (mTLS).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where Prometheus scrapes (plain HTTP; keep it on a private interface).
    #[serde(default = "default_metrics")]
    pub metrics_listen: SocketAddr,
    /// TLS material.
    pub tls: TlsConfig,
    /// A policy file or a directory of them.
    pub policies: PathBuf,
    /// The data directory: ledger (with the vault beside it) and key store. A ledger node's only;
    /// an edge has none.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Where the key-encryption key comes from. A ledger node's only: an edge holds no storage keys.
    #[serde(default)]
    pub kek: Option<KekConfig>,
    /// Where the chain store is: on this node (`local`, the default), or on a ledger node this node
    /// forwards to (`remote`: this node is an edge).
    #[serde(default)]
    pub chain: Chain,
    /// The ledger.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// Key housekeeping.
    #[serde(default)]
    pub keys: KeysSection,
    /// Bounds on what clients may hold of the node.
    #[serde(default)]
    pub ingress: IngressSection,
    /// Risk control's thresholds and responses (docs/risk.md).
    #[serde(default)]
    pub risk: crate::risk::RiskSection,
    /// The node-to-node channel (docs/channel.md): where edges connect, and who they may be.
    #[serde(default)]
    pub channel: Option<ChannelSection>,
    /// The consortium this ledger node is a member of (docs/consortium.md); absent: a ledger of its
    /// own.
    #[serde(default)]
    pub consortium: Option<crate::consortium::ConsortiumSection>,
    /// The file this was read from (a reload reads it again).
    #[serde(skip)]
    pub file: PathBuf,
}

/// Where the chain store is: `chain: local` or `chain: { remote: { … } }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "ChainText")]
pub enum Chain {
    /// This node keeps the ledger, the vault and the storage keys.
    #[default]
    Local,
    /// This node is an edge of a ledger node.
    Remote(RemoteChain),
}

/// How `chain` is written (serde_yaml reads enums only as YAML tags, `!remote`; the map form is the
/// one people write).
#[derive(Deserialize)]
#[serde(untagged)]
enum ChainText {
    Name(String),
    Remote { remote: RemoteChain },
}

impl TryFrom<ChainText> for Chain {
    type Error = String;

    fn try_from(text: ChainText) -> Result<Chain, String> {
        match text {
            ChainText::Name(n) if n == "local" => Ok(Chain::Local),
            ChainText::Name(n) => Err(format!(
                "chain: expected `local` or `{{ remote: {{ address, identity, keys }} }}`, found `{n}`"
            )),
            ChainText::Remote { remote } => Ok(Chain::Remote(remote)),
        }
    }
}

/// An edge's ledger node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteChain {
    /// The ledger node's channel listener.
    pub address: SocketAddr,
    /// The ledger node's identity (Ed25519 public key, 64 hex digits): nothing else is accepted there.
    pub identity: String,
    /// This edge's channel keys: a file (mode 0600) with `{"identity": <64 hex>, "static": <64 hex>}`,
    /// the Ed25519 identity seed and the X25519 static key.
    pub keys: PathBuf,
    /// Seconds an edge waits for its ledger node's answer before answering 503. Default 30.
    #[serde(default = "default_forward_timeout")]
    pub timeout_seconds: u64,
    /// The channel's timers on this side (the edge connects, so it is the side that rekeys).
    #[serde(default)]
    pub timers: ChannelTimers,
}

fn default_forward_timeout() -> u64 {
    30
}

/// The channel listener of a ledger node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// Where other nodes connect (Noise over TCP).
    pub listen: SocketAddr,
    /// Who may connect, by Ed25519 identity; nobody else gets past the handshake.
    #[serde(default)]
    pub peers: Vec<ChannelPeer>,
    /// The channel's timers on this side.
    #[serde(default)]
    pub timers: ChannelTimers,
}

/// WireGuard's timers (docs/channel.md), in seconds. The defaults are WireGuard's; shorter ones are
/// for tests and for operators who want keys replaced more often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelTimers {
    /// REKEY_AFTER_TIME: the connecting side starts a fresh handshake when keys are this old.
    pub rekey_after_seconds: u64,
    /// REJECT_AFTER_TIME: keys this old are used for nothing.
    pub reject_after_seconds: u64,
    /// REKEY_TIMEOUT: a handshake must finish within this.
    pub rekey_timeout_seconds: u64,
    /// KEEPALIVE_TIMEOUT: a side that sent nothing for this long sends a keepalive.
    pub keepalive_seconds: u64,
}

impl Default for ChannelTimers {
    fn default() -> Self {
        let t = crate::channel::Timers::default();
        ChannelTimers {
            rekey_after_seconds: t.rekey_after.as_secs(),
            reject_after_seconds: t.reject_after.as_secs(),
            rekey_timeout_seconds: t.rekey_timeout.as_secs(),
            keepalive_seconds: t.keepalive.as_secs(),
        }
    }
}

impl ChannelTimers {
    /// The session's timers.
    pub fn timers(&self) -> crate::channel::Timers {
        use std::time::Duration;
        crate::channel::Timers {
            rekey_after: Duration::from_secs(self.rekey_after_seconds),
            reject_after: Duration::from_secs(self.reject_after_seconds),
            rekey_timeout: Duration::from_secs(self.rekey_timeout_seconds),
            keepalive: Duration::from_secs(self.keepalive_seconds),
        }
    }

    /// What is wrong with these timers, if anything: each at least 1 s, and keys must outlive a
    /// rekey that starts when they are `rekey_after` old and may take `rekey_timeout`.
    fn problem(&self, section: &str) -> Option<String> {
        let zero = [
            ("rekey_after_seconds", self.rekey_after_seconds),
            ("reject_after_seconds", self.reject_after_seconds),
            ("rekey_timeout_seconds", self.rekey_timeout_seconds),
            ("keepalive_seconds", self.keepalive_seconds),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        if let Some((name, _)) = zero {
            return Some(format!("{section}.timers.{name} must be at least 1"));
        }
        (self.reject_after_seconds
            <= self
                .rekey_after_seconds
                .saturating_add(self.rekey_timeout_seconds))
        .then(|| {
            format!(
                "{section}.timers.reject_after_seconds must exceed rekey_after_seconds + rekey_timeout_seconds"
            )
        })
    }
}

/// One node allowed on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPeer {
    /// A name for logs.
    pub name: String,
    /// Its identity: the Ed25519 public key, 64 hex digits.
    pub identity: String,
}

/// Bounds on connections, time and memory that clients may take of the node (see deploy/gateway.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSection {
    /// Connections held at once; more are closed at accept. Keep it below the process's file
    /// descriptor limit (`ulimit -n`), which the stores and logs share.
    pub max_connections: usize,
    /// Connections one source address may hold at once.
    pub max_connections_per_source: usize,
    /// Concurrent HTTP/2 streams (requests) on one connection.
    pub max_streams_per_connection: u32,
    /// Seconds for a request's headers to arrive (HTTP/1; also how long an idle keep-alive
    /// connection waits for its next request).
    pub header_timeout_seconds: u64,
    /// Seconds for a request's whole body to arrive.
    pub body_timeout_seconds: u64,
    /// Seconds a connection may move no byte either way before it is closed.
    pub idle_timeout_seconds: u64,
    /// Bytes of request bodies held in memory at once, over all connections.
    pub max_body_memory_bytes: usize,
}

impl Default for IngressSection {
    fn default() -> Self {
        IngressSection {
            max_connections: 512,
            max_connections_per_source: 64,
            max_streams_per_connection: 32,
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            max_body_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

impl IngressSection {
    /// What is wrong with these bounds, if anything.
    fn problem(&self) -> Option<String> {
        let zero = [
            ("max_connections", self.max_connections == 0),
            (
                "max_connections_per_source",
                self.max_connections_per_source == 0,
            ),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection == 0,
            ),
            ("header_timeout_seconds", self.header_timeout_seconds == 0),
            ("body_timeout_seconds", self.body_timeout_seconds == 0),
            ("idle_timeout_seconds", self.idle_timeout_seconds == 0),
            (
                "max_body_memory_bytes",
                self.max_body_memory_bytes < 1024 * 1024,
            ),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, bad)| *bad) {
            return Some(format!(
                "ingress.{name} must be at least 1{}",
                if *name == "max_body_memory_bytes" {
                    " MiB"
                } else {
                    ""
                }
            ));
        }
        (self.max_connections_per_source > self.max_connections).then(|| {
            "ingress.max_connections_per_source must not exceed ingress.max_connections".into()
        })
    }
}

/// Key housekeeping options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Seconds between checks for keys due for rotation (also checked at start).
    #[serde(default = "default_rotation_check")]
    pub rotation_check_seconds: u64,
}

impl Default for KeysSection {
    fn default() -> Self {
        KeysSection {
            rotation_check_seconds: default_rotation_check(),
        }
    }
}

fn default_rotation_check() -> u64 {
    60
}

/// TLS material of the ingress listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The CA bundle client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM), checked for every client certificate.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Also accept TLS 1.2 (default: TLS 1.3 only).
    #[serde(default)]
    pub allow_tls12: bool,
}

/// Where the KEK comes from: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekConfig {
    /// A file holding the passphrase (mode 0600; development).
    pub passphrase_file: Option<PathBuf>,
    /// A key file of 64 hex digits (mode 0600).
    pub key_file: Option<PathBuf>,
    /// An AES-256 key in a PKCS#11 token (an HSM): wraps and unwraps happen in the token.
    pub pkcs11: Option<Pkcs11Section>,
}

/// A key in a PKCS#11 token (`kek: { pkcs11: … }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Section {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key's label in the token (default `ledgergate-kek`, what `keymgr init` makes).
    #[serde(default = "default_kek_label")]
    pub key_label: String,
    /// A file holding the user PIN (mode 0600).
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the user PIN.
    pub pin_env: Option<String>,
}

fn default_kek_label() -> String {
    "ledgergate-kek".to_owned()
}

/// Ledger options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The log's name in its checkpoints.
    #[serde(default = "default_origin")]
    pub origin: String,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            origin: default_origin(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

fn default_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_origin() -> String {
    crate::init::DEFAULT_ORIGIN.to_owned()
}

/// A configuration that cannot be used: `file:line:col: code: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {code}: {message}", file.display(), position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Stable code: `io_error`, `invalid_config`, `invalid_value`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Reads and checks `path`; relative paths in it are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |position, code, message: String| ConfigError {
            file: path.to_owned(),
            position,
            code,
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(None, "io_error", format!("cannot read it: {e}")))?;
        let mut c: Config = serde_yaml::from_str(&text).map_err(|e| {
            let full = e.to_string();
            let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
            err(
                e.location().map(|l| (l.line(), l.column())),
                "invalid_config",
                message,
            )
        })?;
        match (&c.chain, &c.kek, &c.data) {
            (Chain::Local, Some(kek), Some(_)) => {
                let given = [
                    kek.passphrase_file.is_some(),
                    kek.key_file.is_some(),
                    kek.pkcs11.is_some(),
                ];
                if given.iter().filter(|g| **g).count() != 1 {
                    return Err(err(
                        None,
                        "invalid_value",
                        "kek: give exactly one of passphrase_file, key_file, pkcs11".into(),
                    ));
                }
                if let Some(p) = &kek.pkcs11
                    && p.pin_file.is_some() == p.pin_env.is_some()
                {
                    return Err(err(
                        None,
                        "invalid_value",
                        "kek: pkcs11: give exactly one of pin_file, pin_env".into(),
                    ));
                }
            }
            (Chain::Local, _, _) => {
                return Err(err(
                    None,
                    "missing_value",
                    "a ledger node (chain: local, the default) needs `data` and `kek`".into(),
                ));
            }
            (Chain::Remote(remote), None, None) => {
                if crate::channel::Identity::from_hex(&remote.identity).is_none() {
                    return Err(err(
                        None,
                        "invalid_value",
                        "chain.remote.identity must be 64 hex digits (the ledger node's Ed25519 public key)".into(),
                    ));
                }
                if let Some(why) = remote.timers.problem("chain.remote") {
                    return Err(err(None, "invalid_value", why));
                }
            }
            (Chain::Remote(_), _, _) => {
                return Err(err(
                    None,
                    "invalid_value",
                    "an edge (chain: remote) holds no storage: remove `data` and `kek`".into(),
                ));
            }
        }
        if c.keys.rotation_check_seconds == 0 {
            return Err(err(
                None,
                "invalid_value",
                "keys.rotation_check_seconds must be at least 1".into(),
            ));
        }
        if let Some(why) = c.ingress.problem() {
            return Err(err(None, "invalid_value", why));
        }
        if let Some(why) = c.risk.problem() {
            return Err(err(None, "invalid_value", why));
        }
        if c.ledger.origin.is_empty()
            || c.ledger.origin.contains(char::is_whitespace)
            || c.ledger.origin.contains('+')
        {
            return Err(err(
                None,
                "invalid_value",
                format!(
                    "ledger.origin {:?} must be non-empty, without spaces or '+'",
                    c.ledger.origin
                ),
            ));
        }
        if let Some(ch) = &c.channel {
            if let Some(why) = ch.timers.problem("channel") {
                return Err(err(None, "invalid_value", why));
            }
            for peer in &ch.peers {
                if crate::channel::Identity::from_hex(&peer.identity).is_none() {
                    return Err(err(
                        None,
                        "invalid_value",
                        format!(
                            "channel.peers: {:?}: identity must be 64 hex digits (an Ed25519 public key)",
                            peer.name
                        ),
                    ));
                }
            }
        }
        if let Some(consortium) = &c.consortium {
            if let Some(why) = consortium.problem() {
                return Err(err(None, "invalid_value", why));
            }
            if !matches!(c.chain, Chain::Local) || c.channel.is_none() {
                return Err(err(
                    None,
                    "invalid_value",
                    "consortium: a member is a ledger node (chain: local) with a `channel` listener"
                        .into(),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            &mut c.tls.cert,
            &mut c.tls.key,
            &mut c.tls.client_ca,
            &mut c.policies,
        ] {
            resolve(p);
        }
        c.data.iter_mut().for_each(resolve);
        c.tls.crls.iter_mut().for_each(resolve);
        if let Some(kek) = c.kek.as_mut() {
            kek.passphrase_file.iter_mut().for_each(resolve);
            kek.key_file.iter_mut().for_each(resolve);
            if let Some(p) = kek.pkcs11.as_mut() {
                p.pin_file.iter_mut().for_each(resolve);
            }
        }
        if let Chain::Remote(remote) = &mut c.chain {
            resolve(&mut remote.keys);
        }
        c.file = path.to_owned();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "gateway.yaml")
        })
    }

    const MINIMAL: &str = "tls: { cert: s.pem, key: s.key, client_ca: ca.pem }\npolicies: p\ndata: d\nkek: { passphrase_file: kek.pass }\n";

    #[test]
    fn relative_paths_resolve_against_the_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.tls.cert, dir.path().join("s.pem"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.ledger.origin, "ledgergate.local/log");
    }

    #[test]
    fn the_documented_example_in_deploy_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.yaml");
        let c = Config::load(&path).unwrap();
        assert_eq!(
            (c.listen.port(), c.metrics_listen.port(), c.tls.crls.len()),
            (8443, 9464, 1)
        );
        assert!(!c.tls.allow_tls12);
    }

    #[test]
    fn a_kek_in_a_token_is_one_pkcs11_section_with_one_pin() {
        let base = "tls: { cert: s.pem, key: s.key, client_ca: ca.pem }\npolicies: p\ndata: d\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            format!("{base}kek: {{ pkcs11: {{ module: /usr/lib/m.so, token_label: t, pin_file: pin }} }}\n"),
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        let p = c.kek.unwrap().pkcs11.unwrap();
        assert_eq!(
            (p.module, p.token_label, p.key_label, p.pin_file),
            (
                PathBuf::from("/usr/lib/m.so"),
                "t".to_owned(),
                "ledgergate-kek".to_owned(),
                Some(dir.path().join("pin"))
            )
        );
        for (kek, error) in [
            (
                "{ pkcs11: { module: m, token_label: t, pin_file: p, pin_env: P } }",
                "gateway.yaml: invalid_value: kek: pkcs11: give exactly one of pin_file, pin_env",
            ),
            (
                "{ pkcs11: { module: m, token_label: t } }",
                "gateway.yaml: invalid_value: kek: pkcs11: give exactly one of pin_file, pin_env",
            ),
            (
                "{ passphrase_file: k, pkcs11: { module: m, token_label: t, pin_env: P } }",
                "gateway.yaml: invalid_value: kek: give exactly one of passphrase_file, key_file, pkcs11",
            ),
            (
                "{ pkcs11: { module: m, token: t, pin_env: P } }",
                "gateway.yaml:4:29: invalid_config: kek.pkcs11: unknown field `token`, expected one of `module`, `token_label`, `key_label`, `pin_file`, `pin_env`",
            ),
        ] {
            assert_eq!(load(&format!("{base}kek: {kek}\n")).unwrap_err(), error);
        }
    }

    #[test]
    fn an_edge_has_no_storage_and_a_ledger_node_needs_it() {
        let tls = "tls: { cert: c.pem, key: k.pem, client_ca: ca.pem }\npolicies: p\n";
        let id = "ab".repeat(32);
        let edge = load(&format!(
            "{tls}chain: {{ remote: {{ address: \"127.0.0.1:7443\", identity: \"{id}\", keys: ch.key }} }}\n"
        ))
        .unwrap();
        assert!(
            matches!(&edge.chain, Chain::Remote(r) if r.keys.ends_with("ch.key") && r.timeout_seconds == 30)
        );
        assert_eq!(
            load(&format!(
                "{tls}data: d\nkek: {{ passphrase_file: k }}\nchain: {{ remote: {{ address: \"127.0.0.1:7443\", identity: \"{id}\", keys: ch.key }} }}\n"
            ))
            .unwrap_err(),
            "gateway.yaml: invalid_value: an edge (chain: remote) holds no storage: remove `data` and `kek`"
        );
        assert_eq!(
            load(&format!("{tls}chain: local\n")).unwrap_err(),
            "gateway.yaml: missing_value: a ledger node (chain: local, the default) needs `data` and `kek`"
        );
        assert!(
            load(&format!("{tls}chain: elsewhere\n"))
                .unwrap_err()
                .contains("chain: expected `local`")
        );
    }

    #[test]
    fn channel_timers_default_to_wireguards_and_are_checked() {
        let id = "ab".repeat(32);
        let c = load(&format!(
            "{MINIMAL}channel: {{ listen: \"127.0.0.1:7443\", timers: {{ rekey_after_seconds: 2, reject_after_seconds: 4, rekey_timeout_seconds: 1, keepalive_seconds: 1 }} }}\n"
        ))
        .unwrap();
        let t = c.channel.unwrap().timers.timers();
        assert_eq!((t.rekey_after.as_secs(), t.reject_after.as_secs()), (2, 4));
        let c = load(&format!(
            "{MINIMAL}channel: {{ listen: \"127.0.0.1:7443\" }}\n"
        ))
        .unwrap();
        assert_eq!(
            c.channel.unwrap().timers.timers(),
            crate::channel::Timers::default()
        );
        assert_eq!(
            load(&format!(
                "{MINIMAL}channel: {{ listen: \"127.0.0.1:7443\", timers: {{ rekey_after_seconds: 3, reject_after_seconds: 4 }} }}\n"
            ))
            .unwrap_err(),
            "gateway.yaml: invalid_value: channel.timers.reject_after_seconds must exceed rekey_after_seconds + rekey_timeout_seconds"
        );
        let tls = "tls: { cert: c.pem, key: k.pem, client_ca: ca.pem }\npolicies: p\n";
        assert_eq!(
            load(&format!(
                "{tls}chain: {{ remote: {{ address: \"127.0.0.1:7443\", identity: \"{id}\", keys: ch.key, timers: {{ keepalive_seconds: 0 }} }} }}\n"
            ))
            .unwrap_err(),
            "gateway.yaml: invalid_value: chain.remote.timers.keepalive_seconds must be at least 1"
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_eq!(
            load(&format!("{MINIMAL}listen: nowhere\n")).unwrap_err(),
            "gateway.yaml:5:9: invalid_config: listen: invalid socket address syntax"
        );
        assert_eq!(
            load(&format!("{MINIMAL}lisen: 127.0.0.1:1\n")).unwrap_err(),
            "gateway.yaml:5:1: invalid_config: unknown field `lisen`, expected one of `listen`, `metrics_listen`, `tls`, `policies`, `data`, `kek`, `chain`, `ledger`, `keys`, `ingress`, `risk`, `channel`, `consortium`"
        );
        assert_eq!(
            load("tls: { cert: s.pem, key: s.key, client_ca: ca.pem }\npolicies: p\ndata: d\nkek: {}\n").unwrap_err(),
            "gateway.yaml: invalid_value: kek: give exactly one of passphrase_file, key_file, pkcs11"
        );
        let syntax = load("policies: [\n").unwrap_err();
        assert!(
            syntax.starts_with("gateway.yaml:") && syntax.contains(": invalid_config: "),
            "{syntax}"
        );
    }
}
