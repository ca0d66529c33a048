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
        made.push(make_member(
            &dir.join(name),
            name,
            i as u64 + 1,
            now,
            actor,
        )?);
    }
    let list: Vec<(u64, &MemberDir)> = (1u64..).zip(made.iter()).collect();
    let list = member_list(&list);
    for m in &made {
        write_member_config(m, &list, false)?;
    }
    Ok(made)
}

/// Makes member `id`'s node directory at `dir`, its listeners on loopback ports numbered after it.
fn make_member(
    dir: &Path,
    name: &str,
    id: u64,
    now: time::OffsetDateTime,
    actor: &str,
) -> Result<MemberDir, InitError> {
    let n = u16::try_from(id).unwrap_or(u16::MAX);
    let node = init(dir, now, actor)?;
    Ok(MemberDir {
        name: name.to_owned(),
        identity: read_node_identity(&node.dir)?,
        dir: node.dir,
        listen: loopback(8500_u16.saturating_add(n)),
        metrics: loopback(9500_u16.saturating_add(n)),
        channel: loopback(7500_u16.saturating_add(n)),
    })
}

/// The `consortium.members` lines for `members` (id, member).
fn member_list(members: &[(u64, &MemberDir)]) -> String {
    members
        .iter()
        .map(|(id, m)| member_line(*id, &m.name, &m.identity, &m.channel))
        .collect()
}

/// One `consortium.members` line.
fn member_line(
    id: u64,
    name: &str,
    identity: &dyn std::fmt::Display,
    address: &dyn std::fmt::Display,
) -> String {
    format!(
        "    - {{ id: {id}, name: {name}, identity: \"{identity}\", address: \"{address}\" }}\n"
    )
}

/// Gives the member's `gateway.yaml` its listeners, its channel and the consortium's `list`.
fn write_member_config(m: &MemberDir, list: &str, join: bool) -> Result<(), InitError> {
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
    let join = if join {
        "  # Joins the running consortium: an officer adds it (gateway consortium add).\n  join: true\n"
    } else {
        ""
    };
    text.push_str(&format!(
        "\n# A member of a development consortium (gateway init --role consortium): see\n\
         # docs/consortium.md. Its channel carries Raft and cosignatures between members.\n\
         channel:\n  listen: \"{}\"\n\
         consortium:\n{join}  members:\n{list}",
        m.channel,
    ));
    replace_public(&path, text.as_bytes())?;
    Ok(())
}

/// A member that joins a running development consortium: a node directory at `dir` with the next
/// unused id and name after those in the `consortium.members` of `member` (a member's directory),
/// `join: true`, and those members and itself as its list. An officer then adds it (printed by
/// `gateway init`). Answers the new member, its id, and where `member`'s officers reach it.
pub fn init_joining(
    dir: &Path,
    member: &Path,
    now: time::OffsetDateTime,
    actor: &str,
) -> Result<(u64, MemberDir, SocketAddr), InitError> {
    let config = crate::config::Config::load(&member.join("gateway.yaml"))
        .map_err(|e| InitError::Conflict(e.to_string()))?;
    let section = config.consortium.ok_or_else(|| {
        InitError::Conflict(format!(
            "{} is not a consortium member's directory (no consortium section)",
            member.display()
        ))
    })?;
    let id = section.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
    let name = NAMES
        .iter()
        .chain(["hotel", "india", "juliett", "kilo", "lima"].iter())
        .find(|n| section.members.iter().all(|m| m.name != **n))
        .ok_or_else(|| InitError::Conflict("no unused member name left".into()))?;
    let joining = make_member(dir, name, id, now, actor)?;
    let mut list: String = section
        .members
        .iter()
        .map(|m| member_line(m.id, &m.name, &m.identity, &m.address))
        .collect();
    list.push_str(&member_list(&[(id, &joining)]));
    write_member_config(&joining, &list, true)?;
    Ok((id, joining, config.listen))
}
