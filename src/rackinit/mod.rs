//! From an inventory of host names to a rack file: `linkcal rack init` asks every host's agent
//! to describe itself, maps the hosts onto the spec's roles (with the conformance checks of
//! `discover --as`), picks every route's data-plane addresses, checks every route with a tiny
//! timed transfer and writes `rack.json` with the provenance of each choice. `linkcal rack
//! check` re-verifies a rack file against the live hosts.

pub mod compose;
#[cfg(test)]
mod compose_tests;
pub mod inventory;
pub mod routes;
pub mod verify;

use std::time::Duration;

pub use crate::control::describe::{HostDescription, Interface, RdmaPort};
pub use inventory::{HostSpec, Place, RackInventory};

use crate::control::{Client, ControlError};
use crate::error::{Classified, ExitClass, InputError};

/// How long connecting to and hearing from an agent may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an agent's `describe` (live hwloc discovery) may take.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures of `rack init` / `rack check`; each names the host or route and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RackInitError {
    /// The inventory or rack file is wrong.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A host's agent could not be reached, or answered as something else.
    #[error(
        "host {host} ({place}): {source}: start its agent (`scripts/launch-ssh start INVENTORY`) or fix {place}.control in the inventory"
    )]
    Agent {
        /// Host name.
        host: String,
        /// Its place in the inventory.
        place: String,
        /// What happened.
        source: ControlError,
    },
    /// A host lacks what its role needs (GPU, RDMA NIC), or the selection names no device.
    #[error("host {host} ({place}): {message}")]
    Role {
        /// Host name.
        host: String,
        /// Its place in the inventory.
        place: String,
        /// What is missing and what to do.
        message: String,
    },
    /// A route's check transfer failed.
    #[error("route {path} ({src} -> {dst}): {message}")]
    Route {
        /// The route.
        path: String,
        /// Sending host.
        src: String,
        /// Receiving host.
        dst: String,
        /// What happened and what to check.
        message: String,
    },
    /// Writing the rack file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Classified for RackInitError {
    /// Errors of the inventory or of a host's make-up are bad input (exit 2); a route that fails
    /// between reachable hosts and an I/O failure are run-time failures (exit 3).
    fn exit_class(&self) -> ExitClass {
        match self {
            RackInitError::Input(_) | RackInitError::Agent { .. } | RackInitError::Role { .. } => ExitClass::BadInput,
            RackInitError::Route { .. } | RackInitError::Io { .. } => ExitClass::Runtime,
        }
    }
}

/// Connects to one host's agent (authenticated, no peers) and asks it to describe itself.
pub fn describe_host(place: Place, h: &HostSpec, token: &str) -> Result<HostDescription, RackInitError> {
    let agent = |source| RackInitError::Agent { host: h.name.clone(), place: place.to_string(), source };
    let (mut c, _) = Client::connect(&h.name, &h.control, token, CONNECT_TIMEOUT).map_err(agent)?;
    let d = c.describe(DESCRIBE_TIMEOUT).map_err(agent)?;
    same_version(place, h, &d)?;
    Ok(d)
}

/// Refuses a host whose agent runs another linkcal than this coordinator.
pub fn same_version(place: Place, h: &HostSpec, d: &HostDescription) -> Result<(), RackInitError> {
    if d.linkcal_version == env!("CARGO_PKG_VERSION") {
        return Ok(());
    }
    let source = ControlError::Remote {
        host: h.name.clone(),
        message: format!(
            "runs linkcal {}, this coordinator {}: install the same build on every host",
            d.linkcal_version,
            env!("CARGO_PKG_VERSION")
        ),
    };
    Err(RackInitError::Agent { host: h.name.clone(), place: place.to_string(), source })
}

/// Asks every host of the inventory to describe itself, in rack order, all at once.
pub fn describe_all(inv: &RackInventory, token: &str) -> Result<Vec<HostDescription>, RackInitError> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = inv.hosts().into_iter().map(|(place, h)| s.spawn(move || describe_host(place, h, token))).collect();
        jobs.into_iter().map(|j| j.join().expect("describe thread panicked")).collect()
    })
}
