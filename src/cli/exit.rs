//! The registry of error types the CLI asks for an exit class: commands return `anyhow` chains,
//! and only the edge knows every module's typed error. Each type says its own class
//! ([`Classified`], implemented in its module); a type not listed here is a run-time failure.

use crate::error::{Classified, ExitClass};

impl Classified for clap::Error {
    /// A flag that does not parse.
    fn exit_class(&self) -> ExitClass {
        ExitClass::BadInput
    }
}

/// The first listed type `cause` is, asked for its class; `None` when it is none of them.
macro_rules! class_of {
    ($cause:expr; $($ty:ty),+ $(,)?) => {{
        let cause = $cause;
        None $(.or_else(|| cause.downcast_ref::<$ty>().map(Classified::exit_class)))+
    }};
}

/// The exit class of one cause of an error chain, when its type is registered.
fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ExitClass> {
    class_of!(cause;
        crate::error::InputError,
        crate::spec::SpecError,
        crate::payload::PayloadError,
        crate::predict::PredictError,
        crate::pci::PciAddrError,
        crate::topology::TopologyError,
        crate::emulate::EmulateError,
        crate::rackinit::RackInitError,
        crate::export::ExportError,
        crate::sim::SimError,
        crate::runner::RunError,
        crate::model::RunDirError,
        clap::Error,
    )
}

/// The process exit code for an error that ended a command: 2 when any cause is bad input,
/// else 3.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    crate::error::exit_code(err, class_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXIT_BAD_INPUT, EXIT_RUNTIME};

    #[test]
    fn classifies_chains() {
        let e = anyhow::Error::new(crate::spec::SpecError::Zero { flag: "--n" }).context("paths");
        assert_eq!(exit_code(&e), EXIT_BAD_INPUT);
        let e = anyhow::anyhow!("agent gpu_p0 died");
        assert_eq!(exit_code(&e), EXIT_RUNTIME);
        let e = anyhow::Error::new(crate::topology::TopologyError::Hwloc("no topology".into()));
        assert_eq!(exit_code(&e), EXIT_RUNTIME);
        let e = anyhow::Error::new(crate::topology::TopologyError::Selection("--gpus 9".into())).context("discover");
        assert_eq!(exit_code(&e), EXIT_BAD_INPUT);
    }
}
