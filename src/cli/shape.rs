//! The rack-shape flags (`--pp-prefill --pp-decode --ib-cards --nic-map`) shared by the
//! subcommands that take a whole rack shape.

use crate::spec::{parse_nic_map, RackShape, SpecError};

/// Rack-shape flags, flattened into a subcommand's flags.
#[derive(Debug, clap::Args)]
pub struct ShapeArgs {
    /// PP_prefill: prefill pipeline stages (GPUs on the prefill server).
    #[arg(long)]
    pub pp_prefill: usize,
    /// PP_decode: decode pipeline stages (decode servers).
    #[arg(long)]
    pub pp_decode: usize,
    /// Num_IB_Cards on the prefill server.
    #[arg(long)]
    pub ib_cards: usize,
    /// NIC used by each prefill GPU, e.g. 0,1,0,1 (default: i mod Num_IB_Cards).
    #[arg(long)]
    pub nic_map: Option<String>,
}

impl ShapeArgs {
    /// The rack shape the flags describe (the NIC map parsed and checked).
    pub fn shape(&self) -> Result<RackShape, SpecError> {
        let map = self.nic_map.as_deref().map(parse_nic_map).transpose()?;
        RackShape::with_nic_map(self.pp_prefill, self.pp_decode, self.ib_cards, map)
    }
}

/// The spec role a server plays (`discover --as`, `probe --as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// The prefill server (PP_prefill GPUs, Num_IB_Cards RDMA NICs behind one PCIe switch).
    Prefill,
    /// A decode server (one GPU, one RDMA NIC, one Ethernet NIC).
    Decode,
}
