//! `gateway init --dir DIR`: make a node directory (or find the complete one already there).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The node directory to make.
    #[arg(long, default_value = "ledgergate-data")]
    dir: PathBuf,
    /// What to make: a ledger node (the default), or an edge of the development ledger node at
    /// `--ledger` (stopped), which then admits it on its channel.
    #[arg(long, value_enum, default_value = "ledger")]
    role: Role,
    /// With `--role edge`: the ledger node's directory (made by `gateway init`).
    #[arg(long, value_name = "DIR", required_if_eq("role", "edge"))]
    ledger: Option<PathBuf>,
    /// With `--role consortium`: how many members (1 to 7), each a node directory under `--dir`.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// With `--role consortium`: make one member at `--dir` that joins the running consortium of
    /// the member directory DIR (the next unused id and name), instead of founding one.
    #[arg(long, value_name = "DIR")]
    join: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Ledger,
    Edge,
    /// A development consortium of `--members` ledger nodes on loopback.
    Consortium,
}

#[allow(clippy::print_stdout)] // the command's output is its job
pub(crate) fn run(args: &InitArgs) -> Result<ExitCode, CliError> {
    if let (Role::Edge, Some(ledger)) = (args.role, &args.ledger) {
        let edge = gateway::init_edge::init_edge(&args.dir, ledger)
            .map_err(|e| CliError::new("init edge", e))?;
        if args.json {
            println!(
                "{}",
                json!({ "dir": edge.dir, "identity": edge.identity.to_hex(), "ledger_identity": edge.ledger_identity.to_hex() })
            );
        } else {
            let d = edge.dir.display();
            println!("created edge directory {d}");
            println!(
                "  config         {d}/gateway.yaml (providers: https://{})",
                gateway::init_edge::DEV_EDGE_LISTEN
            );
            println!(
                "  channel keys   {d}/channel.key (identity {})",
                edge.identity
            );
            println!(
                "  ledger node    {} ({}), channel listener added to its gateway.yaml",
                ledger.display(),
                edge.ledger_identity
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let actor = std::env::var("USER").unwrap_or_else(|_| "gateway-init".to_owned());
    if let (Role::Consortium, Some(member)) = (args.role, &args.join) {
        let (id, m, admin) = gateway::init_consortium::init_joining(
            &args.dir,
            member,
            time::OffsetDateTime::now_utc(),
            &actor,
        )
        .map_err(|e| CliError::new("init joining member", e))?;
        if args.json {
            println!(
                "{}",
                json!({ "id": id, "name": m.name, "dir": m.dir, "identity": m.identity.to_hex(), "listen": m.listen.to_string(), "metrics": m.metrics.to_string(), "channel": m.channel.to_string() })
            );
        } else {
            let (d, at) = (m.dir.display(), member.display());
            println!("created joining member {} (id {id}) in {d}", m.name);
            println!("start it:  gateway serve --config {d}/gateway.yaml");
            println!("add it (as an officer of a running member):");
            println!(
                "  gateway consortium --gateway https://localhost:{} --cert {at}/pki/officer.pem --key {at}/pki/officer.key --cacert {at}/pki/ca.pem \\\n    add --id {id} --name {} --identity {} --address {}",
                admin.port(),
                m.name,
                m.identity,
                m.channel
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.role == Role::Consortium {
        let members = gateway::init_consortium::init_consortium(
            &args.dir,
            args.members,
            time::OffsetDateTime::now_utc(),
            &actor,
        )
        .map_err(|e| CliError::new("init consortium", e))?;
        if args.json {
            let list: Vec<_> = members
                .iter()
                .map(|m| json!({ "name": m.name, "dir": m.dir, "identity": m.identity.to_hex(), "listen": m.listen.to_string(), "metrics": m.metrics.to_string(), "channel": m.channel.to_string() }))
                .collect();
            println!("{}", json!({ "dir": args.dir, "members": list }));
        } else {
            println!(
                "created a development consortium of {} members in {}",
                members.len(),
                args.dir.display()
            );
            for m in &members {
                println!(
                    "  {:<8} {} (providers: https://{}, channel {}, identity {})",
                    m.name,
                    m.dir.display(),
                    m.listen,
                    m.channel,
                    m.identity
                );
            }
            println!(
                "start each: gateway serve --config {}/<name>/gateway.yaml",
                args.dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let node = gateway::init::init(&args.dir, time::OffsetDateTime::now_utc(), &actor)
        .map_err(|e| CliError::new("init", e))?;
    if args.json {
        println!(
            "{}",
            json!({ "dir": node.dir, "created": node.created, "vkey": node.vkey })
        );
    } else {
        let d = node.dir.display();
        println!(
            "{} node directory {d}",
            if node.created {
                "created"
            } else {
                "found the existing"
            }
        );
        println!("  config          {d}/gateway.yaml");
        println!(
            "  development PKI {d}/pki/ (CA, server, provider-a, provider-b, officer, revoked + CRL)"
        );
        println!("  policies        {d}/policies/");
        println!("  keys and ledger {d}/data/ (KEK passphrase in {d}/kek.pass: development only)");
        println!("  checkpoint key  {}", node.vkey);
    }
    Ok(ExitCode::SUCCESS)
}
