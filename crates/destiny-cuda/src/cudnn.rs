//! Convolutions through cuDNN where the library is installed: it is loaded at run time like
//! the other CUDA libraries, at the first convolution (a network without one never loads
//! it), and where it is missing (or a window's padding is one cuDNN cannot express) the
//! products of `convolution.rs` compute the same values. cuDNN's kernels (implicit products,
//! Winograd, FFT) are faster than unrolling into columns on the wide windows of image
//! networks. Each sliding's algorithms are measured once, at its first batch, as PyTorch's
//! `cudnn.benchmark` does, at the backend's precision (fp32 without tensor cores). The
//! handle and descriptors are cuDNN's raw ones: cudarc's safe wrappers do not expose them to
//! the measuring calls.

use crate::{backend_error, CudaBackend, Precision};
use cudarc::cudnn::{result, sys, CudnnError};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use destiny_core::backend::Sliding;
use destiny_core::error::Result;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// The descriptors of one convolution of a batch, and the algorithms cuDNN measured fastest
/// for it, with the workspace each needs.
struct Plan {
    x: sys::cudnnTensorDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    convolution: sys::cudnnConvolutionDescriptor_t,
    forward: (sys::cudnnConvolutionFwdAlgo_t, usize),
    data: (sys::cudnnConvolutionBwdDataAlgo_t, usize),
    filter: (sys::cudnnConvolutionBwdFilterAlgo_t, usize),
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created once, by `Cudnn::plan`, and is destroyed once.
        unsafe {
            let _ = result::destroy_tensor_descriptor(self.x);
            let _ = result::destroy_tensor_descriptor(self.y);
            let _ = result::destroy_filter_descriptor(self.w);
            let _ = result::destroy_convolution_descriptor(self.convolution);
        }
    }
}

/// A cuDNN handle on the backend's stream, and the plans of the convolutions seen so far.
pub(crate) struct Cudnn {
    handle: sys::cudnnHandle_t,
    plans: HashMap<(Sliding, usize), Plan>,
    /// Convolutions cuDNN could not plan (no algorithm, or no memory to measure them): they
    /// run on Destiny's own kernels, and are not tried again.
    refused: HashSet<(Sliding, usize)>,
    /// Keeps the stream the handle queues on alive.
    _stream: Arc<CudaStream>,
}

impl Drop for Cudnn {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: the handle was created once, by `SharedCudnn::open`.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

/// The handle, used by one thread at a time (cuDNN allows a handle on any thread, not on two
/// at once).
pub(crate) struct SharedCudnn(Mutex<Cudnn>);

// SAFETY: the handle and its descriptors are only used under the mutex.
unsafe impl Send for SharedCudnn {}
unsafe impl Sync for SharedCudnn {}

impl SharedCudnn {
    /// A handle on `stream` when the library loads; `None` (own kernels) otherwise, or when
    /// `DESTINY_CUDNN=0` asks for them.
    pub(crate) fn open(stream: &Arc<CudaStream>) -> Option<Self> {
        if std::env::var("DESTINY_CUDNN").is_ok_and(|v| v == "0") {
            return None;
        }
        // SAFETY: loading a library by name.
        if !unsafe { sys::is_culib_present() } {
            return None;
        }
        let handle = result::create_handle().ok()?;
        // SAFETY: a live handle and the backend's stream.
        if unsafe { result::set_stream(handle, stream.cu_stream() as *mut _) }.is_err() {
            let _ = unsafe { result::destroy_handle(handle) };
            return None;
        }
        Some(SharedCudnn(Mutex::new(Cudnn {
            handle,
            plans: HashMap::new(),
            refused: HashSet::new(),
            _stream: stream.clone(),
        })))
    }
}
/// Dimensions of `rows` samples of `channels` planes of `spatial` positions for cuDNN, the
/// spatial ones outermost first, 2D unless the window slides over a third dimension.
fn dimensions(rows: usize, channels: usize, spatial: [usize; 3], three: bool) -> Vec<i32> {
    let mut dims = vec![rows as i32, channels as i32];
    if three {
        dims.push(spatial[2] as i32);
    }
    dims.extend([spatial[1] as i32, spatial[0] as i32]);
    dims
}

/// Strides of a packed tensor of `dims`.
fn packed(dims: &[i32]) -> Vec<i32> {
    let mut strides = vec![1; dims.len()];
    for d in (0..dims.len() - 1).rev() {
        strides[d] = strides[d + 1] * dims[d + 1];
    }
    strides
}

/// True when cuDNN's symmetric padding gives the sliding's output: `(n + 2p - k) / s + 1`
/// positions in every dimension (DSSTNE's even windows of stride 1 pad one side only).
fn expressible(sliding: &Sliding) -> bool {
    let w = &sliding.window;
    (0..3).all(|d| {
        let padded = sliding.input.spatial[d] + 2 * w.padding[d];
        padded >= w.kernel[d]
            && (padded - w.kernel[d]) / w.stride[d] + 1 == sliding.output.spatial[d]
    })
}

/// The first of cuDNN's measured algorithms that ran, at the math `fp32` allows (no tensor
/// cores), with the workspace it needs.
macro_rules! fastest {
    ($results:expr, $fp32:expr) => {
        $results
            .iter()
            .find(|r| {
                r.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && (!$fp32 || r.mathType == sys::cudnnMathType_t::CUDNN_FMA_MATH)
            })
            .map(|r| (r.algo, r.memory))
            .ok_or(CudnnError(sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED))
    };
}

impl Cudnn {
    /// The plan of `sliding` at `rows` samples: its descriptors, and the algorithms cuDNN
    /// measures fastest on first use (as PyTorch's `cudnn.benchmark` does).
    fn plan(
        &mut self,
        sliding: &Sliding,
        rows: usize,
        precision: Precision,
    ) -> std::result::Result<&Plan, CudnnError> {
        if self.plans.contains_key(&(*sliding, rows)) {
            return Ok(&self.plans[&(*sliding, rows)]);
        }
        let w = &sliding.window;
        let three = sliding.input.spatial[2] > 1 || w.kernel[2] > 1;
        let x = dimensions(rows, sliding.input.channels, sliding.input.spatial, three);
        let y = dimensions(rows, sliding.output.channels, sliding.output.spatial, three);
        let mut filter = vec![
            sliding.output.channels as i32,
            sliding.input.channels as i32,
        ];
        filter.extend(dimensions(1, 1, w.kernel, three).into_iter().skip(2));
        let outer_first = |v: [usize; 3]| dimensions(1, 1, v, three).split_off(2);
        let (padding, stride) = (outer_first(w.padding), outer_first(w.stride));
        let dilation = vec![1; padding.len()];
        let float = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
        let fp32 = precision == Precision::Fp32;
        // SAFETY: fresh descriptors, set once from arrays that outlive the calls; the plan
        // owns and destroys them.
        let mut plan = unsafe {
            let plan = Plan {
                x: result::create_tensor_descriptor()?,
                y: result::create_tensor_descriptor()?,
                w: result::create_filter_descriptor()?,
                convolution: result::create_convolution_descriptor()?,
                forward: (
                    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                    0,
                ),
                data: (
                    sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
                    0,
                ),
                filter: (
                    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                    0,
                ),
            };
            let tensor = |desc, dims: &[i32]| {
                result::set_tensornd_descriptor(
                    desc,
                    float,
                    dims.len() as i32,
                    dims.as_ptr(),
                    packed(dims).as_ptr(),
                )
            };
            tensor(plan.x, &x)?;
            tensor(plan.y, &y)?;
            let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
            result::set_filternd_descriptor(
                plan.w,
                float,
                nchw,
                filter.len() as i32,
                filter.as_ptr(),
            )?;
            result::set_convolutionnd_descriptor(
                plan.convolution,
                padding.len() as i32,
                padding.as_ptr(),
                stride.as_ptr(),
                dilation.as_ptr(),
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                float,
            )?;
            let math = match fp32 {
                true => sys::cudnnMathType_t::CUDNN_FMA_MATH,
                false => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
            };
            result::set_convolution_math_type(plan.convolution, math)?;
            plan
        };
        let mut count = 0;
        // SAFETY: the plan's descriptors; cuDNN allocates what it times with.
        unsafe {
            let mut results = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); 8];
            sys::cudnnFindConvolutionForwardAlgorithm(
                self.handle,
                plan.x,
                plan.w,
                plan.convolution,
                plan.y,
                8,
                &mut count,
                results.as_mut_ptr(),
            )
            .result()?;
            plan.forward = fastest!(results[..count as usize], fp32)?;
            let mut results = [std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>(); 8];
            sys::cudnnFindConvolutionBackwardDataAlgorithm(
                self.handle,
                plan.w,
                plan.y,
                plan.convolution,
                plan.x,
                8,
                &mut count,
                results.as_mut_ptr(),
            )
            .result()?;
            plan.data = fastest!(results[..count as usize], fp32)?;
            let mut results = [std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>(); 8];
            sys::cudnnFindConvolutionBackwardFilterAlgorithm(
                self.handle,
                plan.x,
                plan.y,
                plan.convolution,
                plan.w,
                8,
                &mut count,
                results.as_mut_ptr(),
            )
            .result()?;
            plan.filter = fastest!(results[..count as usize], fp32)?;
        }
        Ok(self.plans.entry((*sliding, rows)).or_insert(plan))
    }
}

/// Which pass of a convolution to run, with its operands.
pub(crate) enum Pass<'a> {
    /// `z = beta * z + x (*) w`.
    Forward {
        x: &'a CudaSlice<f32>,
        w: &'a CudaSlice<f32>,
        beta: f32,
        z: &'a mut CudaSlice<f32>,
    },
    /// `dx += dE/dx`.
    Data {
        delta: &'a CudaSlice<f32>,
        w: &'a CudaSlice<f32>,
        dx: &'a mut CudaSlice<f32>,
    },
    /// `grad += alpha * dE/dw`.
    Filter {
        x: &'a CudaSlice<f32>,
        delta: &'a CudaSlice<f32>,
        alpha: f32,
        grad: &'a mut CudaSlice<f32>,
    },
}

impl CudaBackend {
    /// Runs `pass` of a convolution of `rows` samples through cuDNN; `Ok(false)` where there
    /// is no cuDNN or it cannot express the sliding (the caller's own kernels run then).
    pub(crate) fn cudnn_convolution(
        &self,
        sliding: Sliding,
        rows: usize,
        pass: Pass,
    ) -> Result<bool> {
        let Some(shared) = self.cudnn() else {
            return Ok(false);
        };
        if rows == 0 || !expressible(&sliding) {
            return Ok(rows == 0);
        }
        let mut cudnn = shared.0.lock().expect("cuDNN handle");
        let handle = cudnn.handle;
        let error = |e: CudnnError| backend_error(format!("cuDNN: {e:?}"));
        if cudnn.refused.contains(&(sliding, rows)) {
            return Ok(false);
        }
        let plan = match cudnn.plan(&sliding, rows, self.precision) {
            Ok(_) => &cudnn.plans[&(sliding, rows)],
            Err(e) => {
                eprintln!(
                    "destiny: cuDNN cannot run a convolution of {rows} samples from {:?} to {:?} ({e:?}); Destiny's own kernels compute it",
                    sliding.input, sliding.output
                );
                cudnn.refused.insert((sliding, rows));
                return Ok(false);
            }
        };
        let stream = &self.stream;
        let scalar = |v: &f32| v as *const f32 as *const c_void;
        let one = 1.0f32;
        let bytes = match pass {
            Pass::Forward { .. } => plan.forward.1,
            Pass::Data { .. } => plan.data.1,
            Pass::Filter { .. } => plan.filter.1,
        };
        let mut workspace = self.allocate::<u8>(bytes.max(1))?;
        let (space, _space) = workspace.device_ptr_mut(stream);
        let space = space as *mut c_void;
        // SAFETY: the buffers hold the tensors the plan describes (checked by `Backend`'s
        // provided methods), the workspace what the algorithm asked for, and all stay alive
        // while the work is queued (memory is freed in stream order).
        unsafe {
            match pass {
                Pass::Forward { x, w, beta, z } => {
                    let (x, _x) = x.device_ptr(stream);
                    let (w, _w) = w.device_ptr(stream);
                    let (z, _z) = z.device_ptr_mut(stream);
                    result::convolution_forward(
                        handle,
                        scalar(&one),
                        plan.x,
                        x as *const c_void,
                        plan.w,
                        w as *const c_void,
                        plan.convolution,
                        plan.forward.0,
                        space,
                        bytes,
                        scalar(&beta),
                        plan.y,
                        z as *mut c_void,
                    )
                }
                Pass::Data { delta, w, dx } => {
                    let (delta, _delta) = delta.device_ptr(stream);
                    let (w, _w) = w.device_ptr(stream);
                    let (dx, _dx) = dx.device_ptr_mut(stream);
                    result::convolution_backward_data(
                        handle,
                        scalar(&one),
                        plan.w,
                        w as *const c_void,
                        plan.y,
                        delta as *const c_void,
                        plan.convolution,
                        plan.data.0,
                        space,
                        bytes,
                        scalar(&one),
                        plan.x,
                        dx as *mut c_void,
                    )
                }
                Pass::Filter {
                    x,
                    delta,
                    alpha,
                    grad,
                } => {
                    let (x, _x) = x.device_ptr(stream);
                    let (delta, _delta) = delta.device_ptr(stream);
                    let (grad, _grad) = grad.device_ptr_mut(stream);
                    result::convolution_backward_filter(
                        handle,
                        scalar(&alpha),
                        plan.x,
                        x as *const c_void,
                        plan.y,
                        delta as *const c_void,
                        plan.convolution,
                        plan.filter.0,
                        space,
                        bytes,
                        scalar(&one),
                        plan.w,
                        grad as *mut c_void,
                    )
                }
            }
        }
        .map_err(error)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use destiny_core::backend::{Grid, Window};

    fn sliding(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Sliding {
        Sliding {
            input: Grid::new([input, input, 1], 3),
            output: Grid::new([output, output, 1], 8),
            window: Window {
                kernel: [kernel, kernel, 1],
                stride: [stride, stride, 1],
                padding: [padding, padding, 0],
            },
        }
    }

    #[test]
    fn only_symmetric_paddings_go_to_cudnn() {
        // DSSTNE's same convolutions of odd windows and unpadded strided ones.
        assert!(expressible(&sliding(32, 32, 7, 1, 3)));
        assert!(expressible(&sliding(32, 15, 4, 2, 0)));
        // An even window of stride 1 is padded on one side only.
        assert!(!expressible(&sliding(8, 8, 2, 1, 1)));
    }

    #[test]
    fn tensors_are_packed_outermost_first() {
        assert_eq!(dimensions(4, 3, [5, 6, 1], false), vec![4, 3, 6, 5]);
        assert_eq!(dimensions(4, 3, [5, 6, 2], true), vec![4, 3, 2, 6, 5]);
        assert_eq!(packed(&[4, 3, 6, 5]), vec![90, 30, 5, 1]);
    }
}
