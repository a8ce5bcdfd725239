//! `chorus certs ...`: the cluster CA and the certificates it issues.

use crate::exit;
use chorus_core::types::NodeId;
use chorus_runtime::certs::{CertsError, ClusterCa};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create the cluster CA (ca.crt, and ca.key readable only by you).
    /// Refuses to replace an existing one.
    Init {
        /// Directory for the certificates (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue node N's certificate (node-N.crt, node-N.key), signed by the CA in DIR.
    Node {
        /// Directory holding the CA; the certificate is written there too.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node's id (a positive integer).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Another IP address or DNS name HTTPS clients reach the node by
        /// (localhost, 127.0.0.1 and ::1 are always included). Repeat.
        #[arg(long = "san", value_name = "NAME")]
        names: Vec<String>,
    },
    /// Issue a client certificate (client-NAME.crt, client-NAME.key), signed by the CA in DIR.
    Client {
        /// Directory holding the CA; the certificate is written there too.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The client's name: 1 to 64 ASCII letters, digits, '-' or '_'.
        #[arg(long)]
        name: String,
    },
}

pub(crate) fn run(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir } => ClusterCa::init(&dir).map(|_| {
            println!("created the cluster CA: {}", dir.join("ca.crt").display());
            println!("keep {} secret: whoever holds it can join the cluster", dir.join("ca.key").display());
        }),
        CertsCommand::Node { dir, id, names } => {
            load(&dir).and_then(|ca| ca.write_node(&dir, NodeId(id), &names)).map(|(certificate, key)| {
                println!("issued node {id}'s certificate: {} and {}", certificate.display(), key.display());
            })
        }
        CertsCommand::Client { dir, name } => {
            load(&dir).and_then(|ca| ca.write_client(&dir, &name)).map(|(certificate, key)| {
                println!("issued client {name:?}'s certificate: {} and {}", certificate.display(), key.display());
            })
        }
    };
    match result {
        Ok(()) => exit::code(exit::OK),
        Err(error) => {
            eprintln!("error: {error}");
            let code = match error {
                CertsError::Exists(_) | CertsError::BadClientName(_) | CertsError::BadName(_) => exit::USAGE,
                _ => exit::FAILED,
            };
            exit::code(code)
        }
    }
}

fn load(dir: &Path) -> Result<ClusterCa, CertsError> {
    ClusterCa::load(dir).map_err(|error| match error {
        CertsError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => CertsError::Io {
            path,
            source: std::io::Error::new(
                source.kind(),
                format!("{source}; create the CA first with `chorus certs init --dir {}`", dir.display()),
            ),
        },
        other => other,
    })
}
