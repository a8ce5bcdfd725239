//! `chorus member list|add|remove`: the cluster's configuration, over a
//! node's HTTP API (`/v1/members`).

use crate::client_command::{finish, print_table, request, Endpoint, Failure};
use crate::exit;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// List the voters and learners, as the node asked knows them.
    List(ListArgs),
    /// Add node ID (running with `--join`, or about to) as a learner and
    /// promote it once it has caught up; `chorus node --join` does this by
    /// itself.
    Add(AddArgs),
    /// Remove node ID from the cluster (a voter through a joint
    /// configuration). Stop the removed node afterwards.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The node's id.
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// Its peer (QUIC) address, e.g. 127.0.0.1:7004.
    #[arg(long, value_name = "ADDR")]
    address: SocketAddr,
    /// Its HTTP address, for redirects to it once it leads.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The node's id.
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    #[command(flatten)]
    endpoint: Endpoint,
}

pub(crate) fn run(command: MemberCommand) -> ExitCode {
    match command {
        MemberCommand::List(args) => finish(list(&args.endpoint)),
        MemberCommand::Add(args) => finish(add(args)),
        MemberCommand::Remove(args) => finish(remove(args)),
    }
}

fn list(endpoint: &Endpoint) -> Result<(), Failure> {
    let reply = request("GET", &endpoint.endpoint, &endpoint.tls, "/v1/members", None)?;
    if reply.status != 200 {
        return Err(reply.failure());
    }
    print_members(&reply.body)
}

/// Prints the members of a `/v1/members` answer as a table.
fn print_members(body: &[u8]) -> Result<(), Failure> {
    let answer: chorus_runtime::http::MembersAnswer = serde_json::from_slice(body)
        .map_err(|error| Failure { code: exit::FAILED, message: format!("unexpected answer: {error}") })?;
    let shown = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let rows: Vec<Vec<String>> = answer
        .members
        .iter()
        .map(|member| {
            vec![
                member.id.to_string(),
                member.role.clone(),
                if answer.leader == Some(member.id) { "*".to_string() } else { String::new() },
                shown(member.disk.map(|disk| disk.to_string())),
                shown(member.address.map(|address| address.to_string())),
                shown(member.http.map(|http| http.to_string())),
            ]
        })
        .collect();
    print_table(&["ID", "ROLE", "LEADER", "DISK", "ADDRESS", "HTTP"], &rows);
    Ok(())
}

fn add(args: AddArgs) -> Result<(), Failure> {
    let body = serde_json::json!({ "id": args.id, "address": args.address, "http": args.http }).to_string();
    let reply = request(
        "POST",
        &args.endpoint.endpoint,
        &args.endpoint.tls,
        "/v1/members",
        Some(("application/json", body.as_bytes())),
    )?;
    if reply.status != 200 {
        return Err(reply.failure());
    }
    println!("OK: node {} is a voter", args.id);
    Ok(())
}

fn remove(args: RemoveArgs) -> Result<(), Failure> {
    let path = format!("/v1/members/{}", args.id);
    let reply = request("DELETE", &args.endpoint.endpoint, &args.endpoint.tls, &path, None)?;
    match reply.status {
        200 => {
            println!("OK: node {} removed", args.id);
            print_members(&reply.body)
        }
        404 => Err(Failure { code: exit::NO, message: format!("node {} is not a member", args.id) }),
        _ => Err(reply.failure()),
    }
}
