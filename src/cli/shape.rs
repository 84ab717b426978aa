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

/// The model and workload flags `payload` and `predict` share: the model (a preset or a
/// HuggingFace config.json) and N, T, M.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Built-in preset: llama-3.1-8b, llama-3.1-70b, llama-4-scout, qwen3-30b-a3b, qwen3-32b,
    /// qwen3.5-27b, gpt-oss-20b, gpt-oss-120b, gemma-3-27b, gemma-4-26b-a4b, deepseek-v3, nemotron-super-49b.
    #[arg(long)]
    pub model: Option<String>,
    /// A HuggingFace config.json instead of --model.
    #[arg(long)]
    pub model_config: Option<std::path::PathBuf>,
    /// N: batch size (requests).
    #[arg(long)]
    pub n: u64,
    /// T: context length (tokens per request).
    #[arg(long)]
    pub t: u64,
    /// M: prefill chunk size (tokens per pipeline step).
    #[arg(long)]
    pub m: u64,
}
