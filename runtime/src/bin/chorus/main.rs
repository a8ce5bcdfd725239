//! `chorus`: run a node of a Chorus cluster, manage its certificates, and
//! talk to it.
//!
//! ```text
//! chorus certs init   --dir certs
//! chorus certs node   --dir certs --id 1
//! chorus node --id 1 --listen 127.0.0.1:7001 --http 127.0.0.1:8001 \
//!     --data-dir data/1 --certs certs --bootstrap \
//!     --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! ```
//!
//! Exit codes are listed in [`exit`]; `docs/runtime.md` describes every
//! command.

mod bench;
mod certs_command;
mod client_command;
mod exit;
mod join;
mod logging;
mod member_command;
mod node_command;
mod tls_client;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Chorus: a replicated key-value store (Raft over mutual-TLS QUIC).
#[derive(Debug, Parser)]
#[command(name = "chorus", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the cluster CA and issue node and client certificates.
    #[command(subcommand)]
    Certs(certs_command::CertsCommand),
    /// Run one node of a cluster (until SIGTERM or Ctrl-C).
    Node(node_command::NodeArgs),
    /// Set a key to a value.
    Put(client_command::PutArgs),
    /// Print a key's value (exit 1 if absent).
    Get(client_command::GetArgs),
    /// Delete a key.
    Delete(client_command::DeleteArgs),
    /// Compare-and-set: set KEY to NEW if it holds EXPECTED (exit 1 if not).
    Cas(client_command::CasArgs),
    /// A table of the nodes' status.
    Status(client_command::StatusArgs),
    /// List, add or remove the cluster's members.
    #[command(subcommand)]
    Member(member_command::MemberCommand),
    /// Measure writes/s and latency with concurrent clients (Chorus or etcd).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Bad flags: clap prints the problem and exits with code 2 (exit::USAGE).
    let cli = Cli::parse();
    match cli.command {
        Command::Certs(command) => certs_command::run(command),
        Command::Node(args) => node_command::run(args),
        Command::Put(args) => client_command::put(args),
        Command::Get(args) => client_command::get(args),
        Command::Delete(args) => client_command::delete(args),
        Command::Cas(args) => client_command::cas(args),
        Command::Status(args) => client_command::status(args),
        Command::Member(command) => member_command::run(command),
        Command::Bench(args) => bench::run(args),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn node_join_refuses_a_malformed_dns_name_with_its_problem() {
        use clap::Parser;
        let node = ["chorus", "node", "--id", "2", "--listen", "127.0.0.1:7002", "--data-dir", "d", "--certs", "c"];
        let with = |extra: &[&str]| super::Cli::try_parse_from(node.iter().chain(extra));
        assert!(with(&["--join", "dns:chorus-headless:8080"]).is_ok());
        assert!(with(&["--join", "dns:chorus-headless:8080", "--discovery-interval-secs", "5"]).is_ok());
        for (join, problem) in [("dns:chorus-headless", "the port is missing"), ("dns::8080", "the name is empty")] {
            let error = with(&["--join", join]).expect_err(join).to_string();
            assert!(error.contains(problem), "{join}: {error}");
        }
        let error = with(&["--join", "dns:a:1", "--discovery-interval-secs", "0"]).expect_err("interval 0").to_string();
        assert!(error.contains("--discovery-interval-secs"), "{error}");
    }
}
