//! linkcal measures the data links of a disaggregated prefill/decode (PD) LLM inference rack
//! and writes calibrated per-segment bandwidths that simulators and planners load.
//!
//! # Layout
//! One room per concern, on layers; a room imports only rooms on lower layers (never one on
//! its own layer or above), so imports point one way. `scripts/check-layers` holds this list
//! and checks it against every `crate::` path in src/.
//!
//! 0. the ground, importing nothing of ours: [`error`] (exit codes; each typed error says its own
//!    class through [`error::Classified`]), [`units`];
//! 1. [`spec`], [`pci`];
//! 2. [`rdma`], [`payload`], [`topology`];
//! 3. [`gpu`], [`model`];
//! 4. [`transport`], [`stats`];
//! 5. [`control`] (with `netns`: joining the rack's control namespace; `describe`: what an
//!    agent says about its host);
//! 6. [`runner`], [`agent`], [`emulate`], [`sim`], [`verdict`];
//! 7. [`calibrate`], [`predict`], [`rackinit`], [`hwprobe`] (`probe --run` measures through the runner's engine);
//! 8. [`export`], [`report`], [`readers`];
//! 9. [`cli`] (with `exit`: the registry that maps typed errors onto exit codes), then `main`.
//!
//! - [`spec`]: the rack spec as code: parameters, segments, the three paths, NIC mapping, contention.
//! - [`payload`]: payload sizes (chunk activation, KV handoff, decode activation) from a model config.
//! - [`topology`]: hwloc (live or XML) -> PCI tree, GPUs, NICs, switches, locality classes, spec-role conformance.
//! - [`model`]: the one result model (results, calibration, rack files, provenance), its JSON Schemas
//!   and the number checks every file read goes through (`check`); `rundir::ResultsDir`, the one
//!   owner of a run directory (results.json, journal.jsonl, results.csv: written, resumed and read
//!   by one merge rule); `results_csv`, the results' CSV.
//! - [`calibrate`]: segment solver: per-segment capacities, latencies and path models from results; experiment plan.
//! - [`sim`]: flow-level max-min simulator that loads a calibration; synthetic results for tests.
//! - [`predict`]: the planner's answer: Paths 1-3 times for a model and N, T, M on a calibration, with the limiting segment, and their scaling with N and T.
//! - [`export`]: calibration files for SimGrid, ASTRA-sim, AIConfigurator and Vidur.
//! - [`verdict`]: acceptance against rules (floors, fractions of nominal, fleet baselines) and regression between runs.
//! - [`report`]: reports derived from the result model: markdown, JUnit XML, HTML with SVG plots (CSV re-exported from `model`).
//! - [`error`]: exit codes, exit classes ([`error::Classified`]) and the bad-input error that names file and field.
//! - [`units`]: sizes and rates with units: the one grammar (`16MiB`, `64K`, `25 GB/s`) and the one formatter of each.
//! - [`pci`]: PCI addresses as CUDA, hwloc and sysfs write them.
//! - [`gpu`]: CUDA backend (cudarc, driver API loaded at run time): devices by PCI bus id, peer access, start gate, timed copy-engine copies, staging pipeline.
//! - [`rdma`]: RDMA backend (raw ibverbs): RC queue pairs, memory registration (dmabuf or peermem), RDMA WRITE with immediate, endpoint exchange, NUMA pinning.
//! - [`hwprobe`]: the hardware probes of one host: inventory (CUDA GPUs by bus id, AMD GPUs, RDMA NICs) and which probes apply or are waived, with the reason.
//! - [`stats`]: hdrhistogram summaries, confidence interval of the mean, outliers; `stop`: the one
//!   stopping rule of every measurement (run and probe --run).
//! - [`transport`]: the one Transport trait, one file per link kind (host TCP, staged TCP, CUDA P2P and copies, GPUDirect/host RDMA, GPU-staged TCP, NIXL, Mooncake);
//!   `window`: one window of a flow's transfers (what agents and the in-process driver run);
//!   `lanes`: multi-lane sets started from one gate.
//! - [`control`]: the control plane: typed, versioned, size-bounded messages; HMAC challenge-response
//!   auth (`auth`), the limits agents enforce (`limits`).
//! - [`agent`]: the per-host agent that runs flows for the coordinator.
//! - [`emulate`]: the emulated rack: namespaces, veth + tbf per segment, routes, agents; `link`:
//!   what keeps its shaping exact (offloads off, congestion control per socket, veth capacity).
//! - [`runner`]: solo and contended runs, barrier start, warmup, stopping rule, resume; `engine`:
//!   the one measurement loop over a `FlowDriver` (agents: `measure`; in-process transports:
//!   `local`) with an injected clock; `phases`: the two-phase `run --plan calibrate`; `waves`:
//!   experiments that share no segment and no host, run side by side; `aggregate`: what a
//!   contended set carried, from delivered bytes; `fault`: dead and stalled agents.
//! - [`rackinit`]: a real rack's rack file from an inventory: agents describe their hosts, roles
//!   and routes are chosen and checked (`linkcal rack init|check`).
//! - [`readers`]: one entry point per reader of outside bytes (bytes in, never a panic), for `fuzz/`
//!   and the corpus replay test.
//! - [`cli`]: the command line, one file per subcommand; thin over the library.

pub mod agent;
pub mod calibrate;
pub mod cli;
pub mod control;
pub mod emulate;
pub mod error;
pub mod export;
pub mod gpu;
pub mod hwprobe;
pub mod model;
pub mod payload;
pub mod pci;
pub mod predict;
pub mod rackinit;
pub mod rdma;
pub mod readers;
pub mod report;
pub mod runner;
pub mod sim;
pub mod spec;
pub mod stats;
pub mod topology;
pub mod transport;
pub mod units;
pub mod verdict;
