//! `gateway init --role consortium --members N --dir DIR`: a development consortium of `N` members on
//! loopback in one step. Each member is a complete node directory of its own (its own PKI, KEK, key
//! store, checkpoint key and node identity: the members are different organisations), with a
//! `channel` listener and a `consortium` section naming every member. Start each with
//! `gateway serve --config DIR/NAME/gateway.yaml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::channel::Identity;
use crate::files::{FileError, replace_public};
use crate::init::{InitError, init, read_node_identity};

/// Member names, in order.
const NAMES: [&str; 7] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
];

/// One member made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDir {
    /// Its name.
    pub name: String,
    /// Its node directory.
    pub dir: PathBuf,
    /// Its node identity.
    pub identity: Identity,
    /// Where its providers connect.
    pub listen: SocketAddr,
    /// Its metrics listener.
    pub metrics: SocketAddr,
    /// Its channel listener (Raft and cosignatures).
    pub channel: SocketAddr,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Makes a consortium of `members` (1 to 7) under `dir`, which must not exist or be empty.
pub fn init_consortium(
    dir: &Path,
    members: usize,
    now: time::OffsetDateTime,
    actor: &str,
) -> Result<Vec<MemberDir>, InitError> {
    if members == 0 || members > NAMES.len() {
        return Err(InitError::Conflict(format!(
            "a development consortium has 1 to {} members, not {members}",
            NAMES.len()
        )));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(InitError::Partial(dir.to_owned()));
    }
    let mut made = Vec::with_capacity(members);
    for (i, name) in NAMES.iter().take(members).enumerate() {
        let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
        let node = init(&dir.join(name), now, actor)?;
        made.push(MemberDir {
            name: (*name).to_owned(),
            identity: read_node_identity(&node.dir)?,
            dir: node.dir,
            listen: loopback(8500 + n),
            metrics: loopback(9500 + n),
            channel: loopback(7500 + n),
        });
    }
    let list: Vec<String> = made
        .iter()
        .enumerate()
        .map(|(i, m)| {
            format!(
                "    - {{ id: {}, name: {}, identity: \"{}\", address: \"{}\" }}\n",
                i + 1,
                m.name,
                m.identity,
                m.channel
            )
        })
        .collect();
    for m in &made {
        let path = m.dir.join("gateway.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| FileError {
            path: path.clone(),
            why: format!("cannot read it: {e}"),
        })?;
        let mut text = text
            .replace(
                "listen: 127.0.0.1:8443\n",
                &format!("listen: {}\n", m.listen),
            )
            .replace(
                "metrics_listen: 127.0.0.1:9464\n",
                &format!("metrics_listen: {}\n", m.metrics),
            );
        text.push_str(&format!(
            "\n# A member of a development consortium (gateway init --role consortium): see\n\
             # docs/consortium.md. Its channel carries Raft and cosignatures between members.\n\
             channel:\n  listen: \"{}\"\n\
             consortium:\n  members:\n{}",
            m.channel,
            list.concat()
        ));
        replace_public(&path, text.as_bytes())?;
    }
    Ok(made)
}
