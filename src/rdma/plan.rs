//! The write schedule of one transfer: the payload split into contiguous ranges, one per queue
//! pair, each range cut into writes of at most `max_write_bytes`; the last write of every queue
//! pair carries the transfer id as immediate data. RC orders writes within one queue pair
//! only, so the receiver knows the transfer is complete when it has seen the immediate of
//! every queue pair.

use super::RdmaError;

/// How a transfer is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Queue pairs the transfer is spread over.
    pub qps: usize,
    /// Largest single RDMA WRITE, bytes (at most 2^31).
    pub max_write_bytes: u32,
    /// Writes in flight per queue pair (the send queue depth).
    pub outstanding: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { qps: 1, max_write_bytes: 1 << 20, outstanding: 16 }
    }
}

impl WriteOptions {
    /// Checks the options; messages name the option.
    pub fn validate(&self) -> Result<(), RdmaError> {
        if self.qps == 0 || self.qps > 256 {
            return Err(RdmaError::Invalid(format!("queue pairs must be 1..=256 (got {})", self.qps)));
        }
        if self.max_write_bytes == 0 || self.max_write_bytes > 1 << 31 {
            return Err(RdmaError::Invalid(format!("write size must be 1..=2^31 bytes (got {})", self.max_write_bytes)));
        }
        if self.outstanding == 0 || self.outstanding > 8192 {
            return Err(RdmaError::Invalid(format!("outstanding writes must be 1..=8192 (got {})", self.outstanding)));
        }
        Ok(())
    }
}

/// One RDMA WRITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOp {
    /// Queue pair index.
    pub qp: usize,
    /// Offset in both the local and the remote buffer, bytes.
    pub offset: u64,
    /// Bytes written (0 only for a queue pair with nothing to carry but the immediate).
    pub len: u32,
    /// Immediate data (network order on the wire) on the queue pair's last write.
    pub imm: Option<u32>,
}

/// The writes of a `total`-byte transfer, per queue pair. Every queue pair carries exactly one
/// immediate (a zero-length write when its range is empty), so the receiver always awaits
/// `opts.qps` immediates.
pub fn write_plan(total: u64, transfer_id: u32, opts: &WriteOptions) -> Result<Vec<Vec<WriteOp>>, RdmaError> {
    opts.validate()?;
    let q = opts.qps as u64;
    let max = u64::from(opts.max_write_bytes);
    let mut plan = Vec::with_capacity(opts.qps);
    for qp in 0..opts.qps {
        let start = total * qp as u64 / q;
        let end = total * (qp as u64 + 1) / q;
        let mut ops = Vec::new();
        let mut off = start;
        while off < end {
            let len = max.min(end - off);
            ops.push(WriteOp { qp, offset: off, len: len as u32, imm: None });
            off += len;
        }
        match ops.last_mut() {
            Some(last) => last.imm = Some(transfer_id),
            None => ops.push(WriteOp { qp, offset: start, len: 0, imm: Some(transfer_id) }),
        }
        plan.push(ops);
    }
    Ok(plan)
}

/// Immediate data as it goes in a work request (`__be32`).
pub fn imm_to_wire(id: u32) -> u32 {
    id.to_be()
}

/// Immediate data from a work completion (network order) back to the transfer id.
pub fn imm_from_wire(wire: u32) -> u32 {
    u32::from_be(wire)
}

/// Receives each queue pair keeps posted (perftest posts hundreds): with only a few, a sender
/// running ahead by more transfers than that meets RNR NAKs, each a stall of 0.64 ms or more
/// that the timing would absorb silently.
pub const RECEIVES_PER_QP: usize = 128;

/// `opts` with the write size capped to the port's largest message (`max_msg_sz`, bytes).
pub fn cap_to_port(opts: WriteOptions, max_msg_bytes: u32) -> WriteOptions {
    WriteOptions { max_write_bytes: opts.max_write_bytes.min(max_msg_bytes.max(1)), ..opts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(total: u64, opts: WriteOptions) {
        let plan = write_plan(total, 42, &opts).unwrap();
        assert_eq!(plan.len(), opts.qps);
        let mut covered = 0u64;
        let mut next = 0u64;
        for (qp, ops) in plan.iter().enumerate() {
            assert!(!ops.is_empty());
            for (i, op) in ops.iter().enumerate() {
                assert_eq!(op.qp, qp);
                assert_eq!(op.offset, next, "contiguous, no overlap");
                assert!(op.len <= opts.max_write_bytes);
                assert_eq!(op.imm.is_some(), i == ops.len() - 1, "only the last write carries the immediate");
                next += u64::from(op.len);
                covered += u64::from(op.len);
            }
            assert_eq!(ops.last().unwrap().imm, Some(42));
        }
        assert_eq!(covered, total);
    }

    #[test]
    fn plans_cover_the_payload_exactly() {
        check(1, WriteOptions::default());
        check(10 << 20, WriteOptions::default());
        check(10 << 20, WriteOptions { qps: 4, max_write_bytes: 1 << 20, outstanding: 8 });
        check(1_000_003, WriteOptions { qps: 3, max_write_bytes: 65_536, outstanding: 1 });
        check(3 << 30, WriteOptions { qps: 2, max_write_bytes: 1 << 31, outstanding: 4 });
        check(2, WriteOptions { qps: 4, ..Default::default() });
        check(0, WriteOptions { qps: 2, ..Default::default() });
    }

    #[test]
    fn empty_ranges_still_send_their_immediate() {
        let plan = write_plan(2, 7, &WriteOptions { qps: 4, ..Default::default() }).unwrap();
        let zero: Vec<_> = plan.iter().flatten().filter(|o| o.len == 0).collect();
        assert_eq!(zero.len(), 2);
        assert!(zero.iter().all(|o| o.imm == Some(7)));
        assert_eq!(plan.iter().flatten().filter(|o| o.imm.is_some()).count(), 4);
    }

    #[test]
    fn write_counts_follow_the_write_size() {
        let plan = write_plan(10 << 20, 1, &WriteOptions::default()).unwrap();
        assert_eq!(plan[0].len(), 10);
        let plan = write_plan((10 << 20) + 1, 1, &WriteOptions::default()).unwrap();
        assert_eq!(plan[0].len(), 11);
        assert_eq!(plan[0][10].len, 1);
    }

    #[test]
    fn options_and_immediates() {
        assert!(WriteOptions { qps: 0, ..Default::default() }.validate().is_err());
        assert!(WriteOptions { max_write_bytes: 0, ..Default::default() }.validate().is_err());
        assert!(WriteOptions { outstanding: 0, ..Default::default() }.validate().is_err());
        for id in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(imm_from_wire(imm_to_wire(id)), id);
        }
        assert_eq!(imm_to_wire(1).to_ne_bytes(), [0, 0, 0, 1], "network order on the wire");
        const { assert!(RECEIVES_PER_QP >= 128) };
        let big = WriteOptions { max_write_bytes: 1 << 31, ..Default::default() };
        assert_eq!(cap_to_port(big, 1 << 30).max_write_bytes, 1 << 30, "capped to the port's max_msg_sz");
        assert_eq!(cap_to_port(WriteOptions::default(), 1 << 30), WriteOptions::default());
        let plan = write_plan(3 << 30, 1, &cap_to_port(big, 1 << 30)).unwrap();
        assert!(plan[0].iter().all(|w| w.len <= 1 << 30));
    }
}
