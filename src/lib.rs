//! linkcal measures the data links of a disaggregated prefill/decode (PD) LLM inference rack
//! and writes calibrated per-segment bandwidths that simulators and planners load.
//!
//! # Layout
//! One room per concern; imports point one way (the CLI calls runner / calibrate / verdict /
//! report; the runner uses agents, control and transports; everything may use spec, payload,
//! model, stats and topology, which use nothing of ours above them).
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
//! - [`error`]: exit codes and the bad-input error that names file and field.
//! - [`gpu`]: CUDA backend (cudarc, driver API loaded at run time): devices by PCI bus id, peer access, start gate, timed copy-engine copies, staging pipeline.
//! - [`rdma`]: RDMA backend (raw ibverbs): RC queue pairs, memory registration (dmabuf or peermem), RDMA WRITE with immediate, endpoint exchange, NUMA pinning.
//! - [`hwprobe`]: the hardware probes of one host: inventory (CUDA GPUs by bus id, AMD GPUs, RDMA NICs) and which probes apply or are waived, with the reason.
//! - [`stats`]: hdrhistogram summaries, confidence interval of the mean, outliers.
//! - [`transport`]: the one Transport trait, one file per link kind (host TCP, staged TCP, CUDA P2P and copies, GPUDirect/host RDMA, GPU-staged TCP, NIXL).
//! - [`control`]: the control plane: typed, versioned, size-bounded messages; HMAC challenge-response
//!   auth (`auth`), the limits agents enforce (`limits`).
//! - [`agent`]: the per-host agent that runs flows for the coordinator.
//! - [`emulate`]: the emulated rack: namespaces, veth + tbf per segment, routes, agents; `link`:
//!   what keeps its shaping exact (offloads off, congestion control per socket, veth capacity).
//! - [`runner`]: solo and contended runs, barrier start, warmup, stopping rule, resume; `waves`:
//!   experiments that share no segment and no host, run side by side.
//! - [`rackinit`]: a real rack's rack file from an inventory: agents describe their hosts, roles
//!   and routes are chosen and checked (`linkcal rack init|check`).
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
pub mod predict;
pub mod rackinit;
pub mod rdma;
pub mod report;
pub mod runner;
pub mod sim;
pub mod spec;
pub mod stats;
pub mod topology;
pub mod transport;
pub mod units;
pub mod verdict;
