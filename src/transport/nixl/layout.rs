//! The flow options of a NIXL flow and the KV layout of a transfer: one descriptor per KV
//! block, as vLLM's NixlConnector describes a request's blocks to NIXL.
//!
//! vLLM (`vllm/distributed/kv_transfer/kv_connector/v1/nixl_connector.py`) registers each
//! layer's KV cache and lists, per region (a layer's K or V tensor) and per block id, one
//! descriptor `(base + block_id * block_len, block_len, device)`; `block_len` is
//! `block_size` tokens x KV heads x head_dim x dtype bytes. A request's transfer is one
//! `make_prepped_xfer` over the descriptor indices of its blocks in every region, with a
//! notification the peer polls for. A payload of `P` bytes is therefore `P / block_len`
//! descriptors here, every one `block_len` long.

use serde::Deserialize;

/// vLLM's default KV block: 16 tokens.
pub const DEFAULT_BLOCK_TOKENS: u64 = 16;

/// The default descriptor length, bytes: 16 tokens of one layer's K (or V) of a model with 8
/// KV heads of 128 dims in bf16 (llama-3.1-70b): 16 x 8 x 128 x 2 = 32 KiB.
pub const DEFAULT_BLOCK_BYTES: u64 = DEFAULT_BLOCK_TOKENS * 8 * 128 * 2;

/// NIXL's transfer direction, as vLLM uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The prefill side writes into the decode side's blocks and notifies it (the issue's
    /// Path-2 handoff; Dynamo's default direction).
    Write,
    /// The decode side reads the prefill side's blocks and notifies it (vLLM's NixlConnector).
    Read,
}

/// Where the registered KV buffers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mem {
    /// Host memory (NIXL `DRAM_SEG`).
    Dram,
    /// GPU memory (NIXL `VRAM_SEG`), allocated by linkcal's CUDA backend on `src_gpu` /
    /// `dst_gpu`.
    Vram,
}

/// The options of a NIXL flow (`FlowSpec::options`); every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NixlOptions {
    /// Length of one descriptor (one KV block of one layer's K or V), bytes.
    pub block_bytes: u64,
    /// Direction.
    pub op: Op,
    /// Memory kind of both ends.
    pub mem: Mem,
    /// NIXL backend plugin: `UCX` (default) or `LIBFABRIC` (EFA).
    pub backend: String,
    /// `UCX_TLS` linkcal sets for the agent process (`tcp` on loopback and the emulated rack).
    pub ucx_tls: String,
    /// Sender's GPU with `mem: vram` (ordinal, PCI bus id or `{"by_bus": n}`).
    pub src_gpu: Option<serde_json::Value>,
    /// Receiver's GPU with `mem: vram`.
    pub dst_gpu: Option<serde_json::Value>,
}

impl Default for NixlOptions {
    fn default() -> Self {
        NixlOptions {
            block_bytes: DEFAULT_BLOCK_BYTES,
            op: Op::Write,
            mem: Mem::Dram,
            backend: "UCX".into(),
            ucx_tls: "tcp".into(),
            src_gpu: None,
            dst_gpu: None,
        }
    }
}

impl NixlOptions {
    /// Reads the options of a flow (`null` means all defaults); names what is wrong.
    pub fn from_value(v: &serde_json::Value) -> Result<NixlOptions, String> {
        let o: NixlOptions = if v.is_null() {
            NixlOptions::default()
        } else {
            serde_json::from_value(v.clone()).map_err(|e| format!("nixl flow options {v}: {e}"))?
        };
        if o.block_bytes == 0 {
            return Err("nixl option block_bytes is 0: use the KV block length in bytes, e.g. 32768".into());
        }
        if !matches!(o.backend.as_str(), "UCX" | "LIBFABRIC") {
            return Err(format!("nixl backend '{}' is not supported: use UCX or LIBFABRIC", o.backend));
        }
        Ok(o)
    }
}

/// Descriptor length of one KV block, bytes: `block_tokens` tokens of one region. vLLM keeps
/// K and V in separate regions (`split_kv`), so a region holds half of a layer's
/// `kv_per_token_layer_bytes`; MLA keeps one latent region.
pub fn block_bytes(kv_per_token_layer_bytes: u64, block_tokens: u64, split_kv: bool) -> u64 {
    let per_region = if split_kv { kv_per_token_layer_bytes / 2 } else { kv_per_token_layer_bytes };
    per_region.saturating_mul(block_tokens)
}

/// Descriptors of a payload of `bytes`: its length must be a whole number of blocks
/// (`Err` names the sizes to use otherwise).
pub fn blocks(bytes: u64, block_bytes: u64) -> Result<u64, String> {
    if bytes == 0 || bytes % block_bytes != 0 {
        return Err(format!(
            "payload of {bytes} B is not a whole number of {block_bytes} B KV blocks: use payloads that are multiples of the block \
             (or another --kv-block-bytes / --block-tokens)"
        ));
    }
    Ok(bytes / block_bytes)
}

/// `(addr, len)` of every block of a buffer of `len` bytes at `base`, in block-id order.
pub fn block_descs(base: usize, len: u64, block_bytes: u64) -> Vec<(usize, usize)> {
    (0..len / block_bytes).map(|i| (base + (i * block_bytes) as usize, block_bytes as usize)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_70b_blocks() {
        // llama-3.1-70b: 8 KV heads x 128 dims x 2 (K and V) x 2 B = 4096 B per token per layer.
        assert_eq!(block_bytes(4096, 16, true), DEFAULT_BLOCK_BYTES);
        assert_eq!(block_bytes(4096, 256, true), 512 << 10);
        assert_eq!(block_bytes(576, 16, false), 9216);
        assert_eq!(blocks(1 << 20, DEFAULT_BLOCK_BYTES), Ok(32));
        assert!(blocks(1000, 4096).unwrap_err().contains("multiples of the block"));
        assert!(blocks(0, 4096).is_err());
        let d = block_descs(0x1000, 3 * 4096 + 5, 4096);
        assert_eq!(d, vec![(0x1000, 4096), (0x2000, 4096), (0x3000, 4096)]);
    }

    #[test]
    fn options_default_and_refuse_bad_values() {
        let o = NixlOptions::from_value(&serde_json::Value::Null).unwrap();
        assert_eq!((o.op, o.mem, o.ucx_tls.as_str()), (Op::Write, Mem::Dram, "tcp"));
        let o = NixlOptions::from_value(&serde_json::json!({"op": "read", "block_bytes": 4096})).unwrap();
        assert_eq!((o.op, o.block_bytes), (Op::Read, 4096));
        for bad in [serde_json::json!({"block_bytes": 0}), serde_json::json!({"backend": "GDS"}), serde_json::json!({"nope": 1})]
        {
            assert!(NixlOptions::from_value(&bad).is_err(), "{bad}");
        }
    }
}
