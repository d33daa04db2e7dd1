//! Unbatched dense products through cuBLASLt, each shape's algorithm measured at its first
//! use. cuBLAS's `CUBLAS_GEMM_DEFAULT` runs the algorithm its heuristic predicts fastest;
//! the heuristic's next few candidates are sometimes faster on a given shape (a wide output
//! layer, the thin products of the backward pass), and only timing them on the real operands
//! tells, as cuDNN's `cudnnFind*` and PyTorch's `cudnn.benchmark` do for convolutions. A
//! network repeats the same few shapes every batch, so each is measured once, at the cost of
//! a few dozen of its products and one wait for the GPU.
//!
//! The library is loaded at run time like the other CUDA libraries, at the first product;
//! where it is missing, where it offers no algorithm for a shape, or with `DESTINY_CUBLASLT=0`,
//! cuBLAS computes the products as before (`dense.rs`). The handle and descriptors are
//! cuBLASLt's raw ones: cudarc's safe wrapper asks the heuristic for one algorithm only and
//! creates its descriptors again at every call.

use crate::dense::{Batch, Matrix};
use crate::{backend_error, CudaBackend, Precision};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::result::{self, CublasError};
use cudarc::cublaslt::sys;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use destiny_core::backend::GemmShape;
use destiny_core::error::Result;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, Once};

/// Bytes of the workspace every algorithm may use: NVIDIA's recommendation for Hopper (which
/// the split-K and stream-K kernels of the long products want), allocated once per backend.
const WORKSPACE: usize = 32 << 20;

/// Candidates asked of the heuristic for each shape: past its first few, its guesses are
/// rarely the fastest, and each one measured costs a few products once.
const CANDIDATES: usize = 8;

/// Timed runs of each candidate, after one untimed run that loads its kernel.
const REPETITIONS: usize = 2;

/// Largest output a product that accumulates (`beta != 0`) is timed with. Its candidates
/// cannot run on the real output, which every run would add to again, so they write a
/// scratch copy of it instead (reading the real one as `C`, which costs what the real product
/// does). The scratch is allocated once, at the shape's first use, from the pool every buffer
/// comes from, so it bounds the peak memory this adds, as the convolution scratch does; a
/// larger output (the gradient of a million-unit output layer) takes the heuristic's first
/// algorithm, which is what cuBLAS would run.
const TIMING_SCRATCH: usize = 256 << 20;

/// What an algorithm is chosen for: the shape, where the operands lie (their row lengths and
/// how their first elements are aligned, which rule out some kernels), the arithmetic, and
/// whether the product accumulates onto its output (which reads it, and changes the timing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    m: usize,
    n: usize,
    k: usize,
    transpose_a: bool,
    transpose_b: bool,
    /// Row lengths of `a`, `b` and `c`, as stored.
    ld: [usize; 3],
    /// Alignments of the first elements of `a`, `b` and `c`, in bytes.
    alignment: [u32; 3],
    compute: sys::cublasComputeType_t,
    accumulate: bool,
}

/// The column-major problem cuBLASLt computes for a key's row-major one, and the algorithm
/// chosen for it. Row-major `C = op(A) op(B)` is column-major `C^T = op(B)^T op(A)^T`, so the
/// problem's first operand is our `b`, its second our `a`, and its `m` and `n` are ours
/// swapped; each layout describes its matrix as stored, before its transpose.
struct Plan {
    description: sys::cublasLtMatmulDesc_t,
    /// Our `b`.
    first: sys::cublasLtMatrixLayout_t,
    /// Our `a`.
    second: sys::cublasLtMatrixLayout_t,
    /// Our `c`, the problem's `C` and `D` both (the product is in place).
    output: sys::cublasLtMatrixLayout_t,
    algorithm: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created once, by `Plan::describe`, and is destroyed
        // once; one it did not get to is null and left alone.
        unsafe {
            if !self.description.is_null() {
                let _ = result::destroy_matmul_desc(self.description);
            }
            for layout in [self.first, self.second, self.output] {
                if !layout.is_null() {
                    let _ = result::destroy_matrix_layout(layout);
                }
            }
        }
    }
}

/// The operation of a `bool` transpose, as the descriptor's `int32_t` attribute holds it.
fn operation(transpose: bool) -> i32 {
    match transpose {
        true => cublasOperation_t::CUBLAS_OP_T as i32,
        false => cublasOperation_t::CUBLAS_OP_N as i32,
    }
}

/// The compute type of a precision, as `dense.rs` asks cuBLAS for it.
fn compute_type(precision: Precision) -> sys::cublasComputeType_t {
    match precision {
        Precision::Fp32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        Precision::Tf32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
        Precision::Bf16 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
    }
}

/// The alignment of a device address, in bytes, up to the 256 cuBLASLt asks of its fastest
/// kernels (an operand placed at an offset in its buffer may have less).
fn alignment(address: u64) -> u32 {
    1 << address.trailing_zeros().min(8)
}

/// A column-major matrix of the problem as stored: rows, columns, leading dimension, and
/// whether the product uses it transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

/// The problem's matrices as stored: its first operand (our `b`), its second (our `a`), and
/// its output (our `c`). A row-major matrix stored `r x c` with rows of `ld` values is the
/// column-major `c x r` with the same leading dimension.
fn stored(key: &Key) -> [Stored; 3] {
    let Key { m, n, k, .. } = *key;
    let matrix = |(rows, cols), ld, transposed| Stored {
        rows,
        cols,
        ld,
        transposed,
    };
    [
        match key.transpose_b {
            true => matrix((k, n), key.ld[1], true),
            false => matrix((n, k), key.ld[1], false),
        },
        match key.transpose_a {
            true => matrix((m, k), key.ld[0], true),
            false => matrix((k, m), key.ld[0], false),
        },
        matrix((n, m), key.ld[2], false),
    ]
}

impl Plan {
    /// The descriptors of `key`'s problem, with no algorithm yet.
    fn describe(key: &Key) -> std::result::Result<Plan, CublasError> {
        let mut plan = Plan {
            description: std::ptr::null_mut(),
            first: std::ptr::null_mut(),
            second: std::ptr::null_mut(),
            output: std::ptr::null_mut(),
            algorithm: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        let float = sys::cudaDataType::CUDA_R_32F;
        plan.description = result::create_matmul_desc(key.compute, float)?;
        let [first, second, output] = stored(key);
        let layout = |s: Stored| {
            result::create_matrix_layout(float, s.rows as u64, s.cols as u64, s.ld as i64)
        };
        plan.first = layout(first)?;
        plan.second = layout(second)?;
        plan.output = layout(output)?;
        let transposes = [
            (
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                operation(first.transposed),
            ),
            (
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                operation(second.transposed),
            ),
        ];
        for (attribute, value) in transposes {
            // SAFETY: a live descriptor; the attribute is an `int32_t` read from `value`.
            unsafe {
                result::set_matmul_desc_attribute(
                    plan.description,
                    attribute,
                    &value as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
            }?;
        }
        Ok(plan)
    }
}

/// The heuristic's search preferences: the workspace, and the alignments of the operands.
struct Preference(sys::cublasLtMatmulPreference_t);

impl Preference {
    fn new(key: &Key) -> std::result::Result<Self, CublasError> {
        let preference = Preference(result::create_matmul_pref()?);
        use sys::cublasLtMatmulPreferenceAttributes_t as A;
        let workspace = WORKSPACE as u64;
        // SAFETY: a live preference; the workspace attribute is a `uint64_t` read from a u64.
        unsafe {
            result::set_matmul_pref_attribute(
                preference.0,
                A::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &workspace as *const u64 as *const c_void,
                size_of::<u64>(),
            )
        }?;
        // cuBLASLt assumes 256-byte aligned operands unless told otherwise; D is C.
        let [a, b, c] = key.alignment;
        for (attribute, bytes) in [
            (A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, b),
            (A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, a),
            (A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, c),
            (A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, c),
        ] {
            // SAFETY: as above; the alignments are `uint32_t`s read from u32s.
            unsafe {
                result::set_matmul_pref_attribute(
                    preference.0,
                    attribute,
                    &bytes as *const u32 as *const c_void,
                    size_of::<u32>(),
                )
            }?;
        }
        Ok(preference)
    }
}

impl Drop for Preference {
    fn drop(&mut self) {
        // SAFETY: created once, by `Preference::new`, destroyed once.
        let _ = unsafe { result::destroy_matmul_pref(self.0) };
    }
}

/// A product's device addresses, in the problem's order: our `b`, our `a`, and `c`, the
/// output that `d` (where a run writes) is unless a measurement writes elsewhere.
#[derive(Clone, Copy)]
struct Operands {
    first: u64,
    second: u64,
    c: u64,
    d: u64,
    alpha: f32,
    beta: f32,
}

/// A cuBLASLt handle, its workspace, and the plans of the shapes seen so far.
struct Lt {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    /// The plan of each shape seen, `None` where cuBLASLt had no algorithm for it (cuBLAS
    /// computes those, and they are not tried again).
    plans: HashMap<Key, Option<Plan>>,
    stream: Arc<CudaStream>,
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: the handle was created once, by `SharedLt::open`.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

/// The handle, used by one thread at a time (its plans and workspace are shared state).
pub(crate) struct SharedLt(Mutex<Lt>);

// SAFETY: the handle and its descriptors are only used under the mutex.
unsafe impl Send for SharedLt {}
unsafe impl Sync for SharedLt {}

/// Warns once a process that cuBLASLt is missing: every GPU of a process would say the same.
static MISSING: Once = Once::new();

impl SharedLt {
    /// A handle and its workspace on `backend`'s GPU where the library loads; `None` (cuBLAS)
    /// otherwise, or when `DESTINY_CUBLASLT=0` asks for cuBLAS.
    pub(crate) fn open(backend: &CudaBackend) -> Option<Self> {
        if std::env::var("DESTINY_CUBLASLT").is_ok_and(|v| v == "0") {
            return None;
        }
        // SAFETY: loading a library by name.
        if !unsafe { sys::is_culib_present() } {
            MISSING.call_once(|| {
                eprintln!(
                    "destiny: cuBLASLt (libcublasLt.so) was not found; dense products run on cuBLAS's default algorithms"
                )
            });
            return None;
        }
        let workspace = match backend.allocate::<u8>(WORKSPACE) {
            Ok(workspace) => workspace,
            Err(e) => {
                eprintln!("destiny: no memory for cuBLASLt's workspace ({e}); dense products run on cuBLAS");
                return None;
            }
        };
        // The handle and the heuristic work on the current context's device.
        if let Err(e) = backend.stream.context().bind_to_thread() {
            eprintln!("destiny: cuBLASLt did not start ({e}); dense products run on cuBLAS");
            return None;
        }
        let handle = match result::create_handle() {
            Ok(handle) => handle,
            Err(e) => {
                eprintln!("destiny: cuBLASLt did not start ({e:?}); dense products run on cuBLAS");
                return None;
            }
        };
        Some(SharedLt(Mutex::new(Lt {
            handle,
            workspace,
            plans: HashMap::new(),
            stream: backend.stream.clone(),
        })))
    }
}

impl Lt {
    /// Queues `plan`'s product with `algorithm` on the operands.
    fn run(
        &self,
        plan: &Plan,
        algorithm: &sys::cublasLtMatmulAlgo_t,
        operands: Operands,
    ) -> std::result::Result<(), CublasError> {
        let (workspace, _workspace) = self.workspace.device_ptr(&self.stream);
        // SAFETY: the descriptors are live and describe the operands, which the caller's
        // buffers hold (checked by `Backend`'s provided methods) and keep alive while the
        // product is queued; the workspace is the size the heuristic was told of, and only
        // products on this stream use it, one after the other.
        unsafe {
            result::matmul(
                self.handle,
                plan.description,
                &operands.alpha as *const f32 as *const c_void,
                &operands.beta as *const f32 as *const c_void,
                operands.first as *const c_void,
                plan.first,
                operands.second as *const c_void,
                plan.second,
                operands.c as *const c_void,
                plan.output,
                operands.d as *mut c_void,
                plan.output,
                algorithm,
                workspace as *mut c_void,
                WORKSPACE,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        }
    }

    /// The plan of `key` with the fastest of the heuristic's candidates measured on the
    /// operands, or `None` where no candidate runs (after saying so).
    fn measure(
        &self,
        backend: &CudaBackend,
        key: &Key,
        operands: Operands,
    ) -> Result<Option<Plan>> {
        let refuse = |why: String| -> Result<Option<Plan>> {
            eprintln!(
                "destiny: cuBLASLt cannot compute a product of {} x {} by {} x {} ({}{}, {}); cuBLAS computes it",
                key.m,
                key.k,
                key.k,
                key.n,
                if key.transpose_a { "A transposed" } else { "A" },
                if key.transpose_b { ", B transposed" } else { ", B" },
                why
            );
            Ok(None)
        };
        self.stream
            .context()
            .bind_to_thread()
            .map_err(backend_error)?;
        let candidates = match self.candidates(key) {
            Ok((plan, candidates)) if !candidates.is_empty() => (plan, candidates),
            Ok(_) => return refuse("no algorithm fits".into()),
            Err(e) => return refuse(format!("{e:?}")),
        };
        let (mut plan, candidates) = candidates;
        if candidates.len() == 1 {
            plan.algorithm = candidates[0];
            return Ok(Some(plan));
        }
        // A product that accumulates writes a scratch copy of its output while it is timed
        // (see TIMING_SCRATCH); one too large for the scratch takes the first candidate.
        let mut scratch = None;
        let mut target = operands;
        if key.accumulate {
            let len = key.ld[2] * (key.m - 1) + key.n;
            let space = match len * size_of::<f32>() <= TIMING_SCRATCH {
                true => backend.allocate::<f32>(len).ok(),
                false => None,
            };
            let Some(space) = space else {
                plan.algorithm = candidates[0];
                return Ok(Some(plan));
            };
            let d = space.device_ptr(&self.stream).0;
            if alignment(d) < key.alignment[2] {
                plan.algorithm = candidates[0];
                return Ok(Some(plan));
            }
            target.d = d;
            scratch = Some(space);
        }
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let context = self.stream.context();
        let (start, end) = (
            context.new_event(timing).map_err(backend_error)?,
            context.new_event(timing).map_err(backend_error)?,
        );
        let mut fastest: Option<(f32, sys::cublasLtMatmulAlgo_t)> = None;
        for algorithm in candidates {
            // An algorithm the heuristic offers may still refuse the operands; the untimed
            // run finds out, and loads its kernel.
            if self.run(&plan, &algorithm, target).is_err() {
                continue;
            }
            start.record(&self.stream).map_err(backend_error)?;
            let ran = (0..REPETITIONS).all(|_| self.run(&plan, &algorithm, target).is_ok());
            end.record(&self.stream).map_err(backend_error)?;
            let milliseconds = start.elapsed_ms(&end).map_err(backend_error)?;
            if ran && fastest.is_none_or(|(best, _)| milliseconds < best) {
                fastest = Some((milliseconds, algorithm));
            }
        }
        // The scratch is freed in stream order, after the runs that write it.
        drop(scratch);
        match fastest {
            Some((_, algorithm)) => {
                plan.algorithm = algorithm;
                Ok(Some(plan))
            }
            None => refuse("no candidate algorithm ran".into()),
        }
    }

    /// `key`'s descriptors, and the heuristic's candidates for it that fit the workspace, in
    /// its order (its best guess first).
    fn candidates(
        &self,
        key: &Key,
    ) -> std::result::Result<(Plan, Vec<sys::cublasLtMatmulAlgo_t>), CublasError> {
        let plan = Plan::describe(key)?;
        let preference = Preference::new(key)?;
        let mut count = 0;
        // SAFETY: a zeroed heuristic result is valid plain data (the heuristic overwrites the
        // ones it returns).
        let mut results =
            [unsafe { std::mem::zeroed::<sys::cublasLtMatmulHeuristicResult_t>() }; CANDIDATES];
        // SAFETY: live descriptors and preference; the heuristic writes at most CANDIDATES
        // results into the array and their number into `count`.
        let status = unsafe {
            sys::cublasLtMatmulAlgoGetHeuristic(
                self.handle,
                plan.description,
                plan.first,
                plan.second,
                plan.output,
                plan.output,
                preference.0,
                CANDIDATES as i32,
                results.as_mut_ptr(),
                &mut count,
            )
        };
        // No algorithm at all is an answer, not a failure.
        if status == sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED {
            return Ok((plan, Vec::new()));
        }
        status.result()?;
        let candidates = results[..(count.max(0) as usize).min(CANDIDATES)]
            .iter()
            .filter(|r| {
                r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS
                    && r.workspaceSize <= WORKSPACE
            })
            .map(|r| r.algo)
            .collect();
        Ok((plan, candidates))
    }
}

impl CudaBackend {
    /// Computes `batched_product`'s single product through cuBLASLt with its shape's measured
    /// algorithm; `Ok(false)` where cuBLASLt is off or missing, or has no algorithm for the
    /// shape (cuBLAS computes it then). Same contract: with `beta` 0, `c` is not read.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn blas_lt_product(
        &self,
        shape: GemmShape,
        batch: Batch,
        alpha: f32,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        beta: f32,
        c: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        debug_assert_eq!(batch.count, 1);
        // A product over nothing only scales `c`; cuBLAS does that, cuBLASLt's layouts
        // cannot be empty.
        if shape.k == 0 {
            return Ok(false);
        }
        let Some(shared) = self.blas_lt() else {
            return Ok(false);
        };
        let stream = &self.stream;
        let at = |pointer: u64, matrix: Matrix| pointer + (matrix.offset * size_of::<f32>()) as u64;
        let (a_pointer, _a) = a.device_ptr(stream);
        let (b_pointer, _b) = b.device_ptr(stream);
        let (c_pointer, _c) = c.device_ptr_mut(stream);
        let (a_pointer, b_pointer, c_pointer) = (
            at(a_pointer, batch.a),
            at(b_pointer, batch.b),
            at(c_pointer, batch.c),
        );
        let key = Key {
            m: shape.m,
            n: shape.n,
            k: shape.k,
            transpose_a: shape.transpose_a,
            transpose_b: shape.transpose_b,
            ld: [batch.a.ld, batch.b.ld, batch.c.ld],
            alignment: [a_pointer, b_pointer, c_pointer].map(alignment),
            compute: compute_type(self.precision),
            accumulate: beta != 0.0,
        };
        let operands = Operands {
            first: b_pointer,
            second: a_pointer,
            c: c_pointer,
            d: c_pointer,
            alpha,
            beta,
        };
        let mut lt = shared.0.lock().expect("cuBLASLt handle");
        if !lt.plans.contains_key(&key) {
            let plan = lt.measure(self, &key, operands)?;
            lt.plans.insert(key, plan);
        }
        let Some(plan) = &lt.plans[&key] else {
            return Ok(false);
        };
        // With beta 0 the measurement wrote `c` already, but with every candidate in turn:
        // the chosen one writes it last, so that a shape's products are always its own.
        lt.run(plan, &plan.algorithm, operands)
            .map_err(|e| backend_error(format!("cuBLASLt: {e:?}")))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLASLt's `D = op(A) op(B)` on column-major matrices as `stored` describes them.
    fn column_major(key: &Key, first: &[f32], second: &[f32]) -> Vec<f32> {
        let [a, b, d] = stored(key);
        let at = |s: Stored, buffer: &[f32], i: usize, j: usize| match s.transposed {
            true => buffer[j + i * s.ld],
            false => buffer[i + j * s.ld],
        };
        let (rows, cols, inner) = (d.rows, d.cols, key.k);
        // op(A) is rows x inner, op(B) inner x cols.
        let dims = |s: Stored| match s.transposed {
            true => (s.cols, s.rows),
            false => (s.rows, s.cols),
        };
        assert_eq!((dims(a), dims(b)), ((rows, inner), (inner, cols)));
        let mut out = vec![0.0; d.ld * (cols - 1) + rows];
        for i in 0..rows {
            for j in 0..cols {
                out[i + j * d.ld] = (0..inner)
                    .map(|l| at(a, first, i, l) * at(b, second, l, j))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn row_major_products_are_column_major_products_of_the_transposes() {
        let (m, n, k) = (3, 4, 5);
        for (transpose_a, transpose_b) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            // Rows one value longer than the matrices, as an operand inside a wider buffer.
            let ld = [
                if transpose_a { m } else { k } + 1,
                if transpose_b { k } else { n } + 1,
                n + 1,
            ];
            let key = Key {
                m,
                n,
                k,
                transpose_a,
                transpose_b,
                ld,
                alignment: [256; 3],
                compute: sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                accumulate: false,
            };
            let rows =
                |t: bool, stored_rows: usize, other: usize| if t { other } else { stored_rows };
            let a: Vec<f32> = (0..rows(transpose_a, m, k) * ld[0])
                .map(|v| v as f32 * 0.5 - 3.0)
                .collect();
            let b: Vec<f32> = (0..rows(transpose_b, k, n) * ld[1])
                .map(|v| 2.0 - v as f32 * 0.25)
                .collect();
            let op_a = |r: usize, l: usize| match transpose_a {
                true => a[l * ld[0] + r],
                false => a[r * ld[0] + l],
            };
            let op_b = |l: usize, c: usize| match transpose_b {
                true => b[c * ld[1] + l],
                false => b[l * ld[1] + c],
            };
            let d = column_major(&key, &b, &a);
            for r in 0..m {
                for c in 0..n {
                    let expected: f32 = (0..k).map(|l| op_a(r, l) * op_b(l, c)).sum();
                    assert_eq!(
                        d[r * ld[2] + c],
                        expected,
                        "{transpose_a} {transpose_b} at {r}, {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn alignments_stop_at_256_bytes() {
        assert_eq!(alignment(0x7f00_0000_0000), 256);
        assert_eq!(alignment(0x7f00_0000_0104), 4);
        assert_eq!(alignment(0x7f00_0000_0180), 128);
    }
}
