//! The start gate: a one-thread spin kernel, embedded as PTX and loaded with the driver's
//! module API (no CUDA toolkit at build time), that holds a stream until the host writes a
//! flag in mapped host memory. Copies are enqueued behind it, so the timed region starts when
//! the flag flips, not while the CPU is still enqueueing (the nvbandwidth technique).

use std::ffi::{c_void, CString};
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaStream, PinnedHostSlice};

use super::{CallContext, GpuError};

/// Kernel entry name inside [`SPIN_PTX`].
pub const SPIN_ENTRY: &str = "linkcal_spin_gate";

/// PTX of the gate: spins with volatile loads of a 32-bit flag until it is non-zero or
/// `timeout_clocks` SM clocks have passed (so a host that dies cannot hang the GPU). Written
/// for PTX ISA 6.0 / sm_50 so every driver since CUDA 9 can JIT it for its GPU.
pub const SPIN_PTX: &str = r#"//
// linkcal start gate: wait for *flag != 0 or a clock64 timeout.
//
.version 6.0
.target sm_50
.address_size 64

.visible .entry linkcal_spin_gate(
	.param .u64 linkcal_spin_gate_param_0,
	.param .u64 linkcal_spin_gate_param_1
)
{
	.reg .pred 	%p<3>;
	.reg .b32 	%r<2>;
	.reg .b64 	%rd<7>;

	ld.param.u64 	%rd1, [linkcal_spin_gate_param_0];
	ld.param.u64 	%rd2, [linkcal_spin_gate_param_1];
	cvta.to.global.u64 	%rd3, %rd1;
	mov.u64 	%rd4, %clock64;
	add.s64 	%rd5, %rd4, %rd2;
$L__spin:
	ld.volatile.global.u32 	%r1, [%rd3];
	setp.ne.s32 	%p1, %r1, 0;
	@%p1 bra 	$L__done;
	mov.u64 	%rd6, %clock64;
	setp.lt.u64 	%p2, %rd6, %rd5;
	@%p2 bra 	$L__spin;
$L__done:
	ret;
}
"#;

/// The gate module loaded into one device's (primary) context and its kernel.
#[derive(Clone, Copy)]
struct Loaded {
    func: sys::CUfunction,
}

// SAFETY: a CUfunction is a driver handle usable from any thread with its context bound; the
// module behind it stays loaded for the process (it is never unloaded).
unsafe impl Send for Loaded {}

/// The gate module of each device, loaded (and JITed) once per run into its primary context.
static MODULES: super::cache::PerDevice<Loaded> = super::cache::PerDevice::new();

/// Loads the gate PTX into the current context (`ctx`, bound by the caller).
fn load(_ctx: &Arc<CudaContext>) -> Result<Loaded, GpuError> {
    let image = CString::new(SPIN_PTX).map_err(|_| GpuError::Invalid("PTX contains NUL".into()))?;
    // SAFETY: `image` is a NUL-terminated PTX string that outlives the call (the driver
    // copies/JITs it during cuModuleLoadData).
    let module = unsafe { result::module::load_data(image.as_ptr() as *const c_void) }.call("cuModuleLoadData")?;
    let name = CString::new(SPIN_ENTRY).expect("entry name has no NUL");
    // SAFETY: `module` was just loaded; it stays loaded for the process.
    match unsafe { result::module::get_function(module, name) } {
        Ok(func) => Ok(Loaded { func }),
        Err(e) => {
            // SAFETY: unloading the module created above, which nothing else references.
            let _ = unsafe { result::module::unload(module) };
            Err(GpuError::driver("cuModuleGetFunction", e))
        }
    }
}

/// The gate kernel and its flag for one context (the module is shared by every gate of the
/// device for the run; each gate has its own flag).
pub struct Gate {
    ctx: Arc<CudaContext>,
    func: sys::CUfunction,
    flag: PinnedHostSlice<u32>,
    flag_host: *mut u32,
    flag_dev: sys::CUdeviceptr,
    timeout_clocks: u64,
}

// SAFETY: the handles are driver objects usable from any thread once the context is bound;
// the flag pointer aliases the pinned allocation owned by `flag`.
unsafe impl Send for Gate {}

impl Gate {
    /// Loads the PTX into `ctx` and allocates the mapped flag. `timeout_s` bounds how long a
    /// gate can hold a stream if the host never releases it.
    pub fn new(ctx: &Arc<CudaContext>, timeout_s: f64) -> Result<Gate, GpuError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let func = MODULES.get_or_try_init(ctx.ordinal(), || load(ctx))?.func;
        let flags = sys::CU_MEMHOSTALLOC_PORTABLE | sys::CU_MEMHOSTALLOC_DEVICEMAP;
        // SAFETY: the flag is written (zeroed) below before the kernel can read it.
        let mut flag = unsafe { ctx.alloc_pinned_with_flags::<u32>(1, flags) }.call("cuMemHostAlloc")?;
        let flag_host = flag.as_mut_ptr().call("cuEventSynchronize")?;
        // SAFETY: `flag_host` points to one u32 of pinned memory owned by `flag`.
        unsafe { std::ptr::write_volatile(flag_host, 0) };
        let mut flag_dev: sys::CUdeviceptr = 0;
        // SAFETY: `flag_host` was allocated with DEVICEMAP in this (current) context; the
        // driver writes the device alias into `flag_dev`. Flags must be 0.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut flag_dev, flag_host as *mut c_void, 0) }
            .result()
            .call("cuMemHostGetDevicePointer")?;
        let khz = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE).unwrap_or(0);
        Ok(Gate { ctx: ctx.clone(), func, flag, flag_host, flag_dev, timeout_clocks: timeout_clocks(khz, timeout_s) })
    }

    /// Closes the gate (flag = 0) before a new round of launches.
    pub fn arm(&self) {
        // SAFETY: `flag_host` is valid for the life of `self.flag`.
        unsafe { std::ptr::write_volatile(self.flag_host, 0) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Enqueues the spin kernel on `stream`, of this gate's context or of another device's:
    /// the flag is portable, mapped host memory, so one gate (one flag, one host write) holds
    /// streams on every GPU of a multi-lane set; the kernel is the stream's device's module.
    pub fn hold(&self, stream: &CudaStream) -> Result<(), GpuError> {
        let ctx = stream.context();
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let (func, mut flag) = if ctx.cu_ctx() == self.ctx.cu_ctx() {
            (self.func, self.flag_dev)
        } else {
            let func = MODULES.get_or_try_init(ctx.ordinal(), || load(ctx))?.func;
            let mut dev: sys::CUdeviceptr = 0;
            // SAFETY: `flag_host` was allocated PORTABLE | DEVICEMAP, so it is mapped into every
            // context, this (current) one included; the driver writes its alias into `dev`.
            unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, self.flag_host as *mut c_void, 0) }
                .result()
                .call("cuMemHostGetDevicePointer")?;
            (func, dev)
        };
        let mut timeout = self.timeout_clocks;
        let mut params = [&mut flag as *mut u64 as *mut c_void, &mut timeout as *mut u64 as *mut c_void];
        // SAFETY: `func` is a live kernel of the current context taking (u64, u64); `params`
        // holds pointers to two u64 values that the driver copies during the launch call. One
        // thread, no shared memory.
        unsafe { result::launch_kernel(func, (1, 1, 1), (1, 1, 1), 0, stream.cu_stream(), &mut params) }.call("cuLaunchKernel")
    }

    /// Opens the gate: every stream held by this gate starts its queued work.
    pub fn release(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: as in `arm`.
        unsafe { std::ptr::write_volatile(self.flag_host, 1) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// The flag's device address (for tests and diagnostics).
    pub fn flag_device_ptr(&self) -> sys::CUdeviceptr {
        self.flag_dev
    }

    /// Length of the flag allocation in elements (always 1).
    pub fn flag_len(&self) -> usize {
        self.flag.len()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
        let _ = self.ctx.bind_to_thread();
        let _ = self.ctx.synchronize();
    }
}

/// SM clocks for `timeout_s` at `clock_khz` (2 GHz assumed when the driver reports none).
pub fn timeout_clocks(clock_khz: i32, timeout_s: f64) -> u64 {
    let khz = if clock_khz > 0 { clock_khz as f64 } else { 2.0e6 };
    (khz * 1e3 * timeout_s.max(0.0)).min(1e18) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Declared register counts, e.g. `.reg .b64 %rd<7>;` -> ("rd", 7).
    fn declared(ptx: &str) -> Vec<(String, usize)> {
        ptx.lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix(".reg")?;
                let decl = rest.split_whitespace().nth(1)?.trim_end_matches(';');
                let (name, n) = decl.strip_prefix('%')?.split_once('<')?;
                Some((name.to_string(), n.trim_end_matches('>').parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn ptx_header_and_entry_are_well_formed() {
        let body: Vec<&str> = SPIN_PTX.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).collect();
        assert!(body[0].starts_with(".version "), "the first directive must be .version");
        assert!(body[1].starts_with(".target sm_"));
        assert_eq!(body[2], ".address_size 64");
        assert!(SPIN_PTX.contains(&format!(".visible .entry {SPIN_ENTRY}(")));
        assert_eq!(SPIN_PTX.matches('{').count(), SPIN_PTX.matches('}').count());
        assert_eq!(SPIN_PTX.matches('(').count(), SPIN_PTX.matches(')').count());
        assert!(!SPIN_PTX.contains('\0'));
        assert!(SPIN_PTX.is_ascii());
    }

    #[test]
    fn ptx_uses_only_declared_registers_params_and_labels() {
        let decl = declared(SPIN_PTX);
        assert_eq!(decl.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["p", "r", "rd"]);
        let code = SPIN_PTX.split_once('{').unwrap().1;
        let mut used = BTreeSet::new();
        for tok in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '%' || c == '_' || c == '$')) {
            if let Some(reg) = tok.strip_prefix('%') {
                if reg == "clock64" {
                    continue;
                }
                let split = reg.find(|c: char| c.is_ascii_digit()).unwrap_or(reg.len());
                let (name, num) = reg.split_at(split);
                if num.is_empty() {
                    continue; // the `%p<3>` declarations themselves
                }
                let n: usize = num.parse().unwrap();
                let (_, count) = decl.iter().find(|d| d.0 == name).unwrap_or_else(|| panic!("%{name} undeclared"));
                assert!(n < *count, "%{reg} beyond its declaration");
                used.insert(reg.to_string());
            }
        }
        assert!(used.contains("rd6") && used.contains("p2") && used.contains("r1"));
        // Every parameter the body loads is declared in the entry signature, and both are used.
        for i in 0..2 {
            let p = format!("{SPIN_ENTRY}_param_{i}");
            assert_eq!(SPIN_PTX.matches(&p).count(), 2, "{p} declared once and loaded once");
        }
        // Every branch target is defined exactly once.
        for target in ["$L__spin", "$L__done"] {
            assert_eq!(SPIN_PTX.matches(&format!("{target}:")).count(), 1);
            assert!(SPIN_PTX.contains(&format!("bra \t{target};")));
        }
        // The flag load must be volatile, or the loop could be hoisted into a hang.
        assert!(SPIN_PTX.contains("ld.volatile.global.u32"));
    }

    #[test]
    fn timeouts_scale_with_the_clock() {
        assert_eq!(timeout_clocks(1_980_000, 1.0), 1_980_000_000);
        assert_eq!(timeout_clocks(0, 1.0), 2_000_000_000);
        assert_eq!(timeout_clocks(1_000_000, -3.0), 0);
    }
}
