//! The CUDA backend against the CPU backend, operation by operation, and the cases every
//! backend must pass (`destiny_core::testing`: gradients and whole training runs), on fresh
//! random inputs. Needs a GPU: run with `--ignored` (scripts/gpu-test.sh).

use destiny_core::backend::cpu::CpuBackend;
use destiny_core::backend::{
    Backend, ColumnWindow, GemmShape, Grid, LocalResponse, Normalization, NormalizationPass,
    OptimizerKind, OptimizerStep, OutputLayer, Pooling, Shape, Sliding, SpatialOperations, Strided,
    Target, Window,
};
use destiny_core::config::*;
use destiny_core::testing::{
    activations, close, output_cases, random_values, sparse_rows, MARGINAL,
};
use destiny_cuda::{CudaBackend, Precision};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn gpu() -> CudaBackend {
    CudaBackend::new(0).expect("a CUDA GPU")
}

// Gradients and whole training runs, against the CPU backend and finite differences.
destiny_core::backend_cases!(gpu, #[ignore = "needs a CUDA GPU"]);

fn poisoned(gpu: &CudaBackend, n: usize) -> cudarc::driver::CudaSlice<f32> {
    gpu.upload(&vec![f32::NAN; n]).unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn dense_and_sparse_products() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (m, n, k) = (67, 130, 45);
    // fp32 to fp32 accuracy; the faster precisions within their mantissas' reach.
    let precisions = [
        (Precision::Fp32, 1e-5),
        (Precision::Tf32, 5e-3),
        (Precision::Bf16, 2e-2),
    ]
    .map(|(precision, bound)| (self::gpu().with_precision(precision), bound));
    for ((ta, tb), (product, bound)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .flat_map(|t| precisions.iter().map(move |p| (t, p)))
    {
        let precision = product.precision();
        let a = random_values(&mut rng, m * k, -1.0, 1.0);
        let b = random_values(&mut rng, k * n, -1.0, 1.0);
        let c = random_values(&mut rng, m * n, -1.0, 1.0);
        let shape = GemmShape {
            m,
            n,
            k,
            transpose_a: ta,
            transpose_b: tb,
        };
        let mut expected = c.clone();
        cpu.gemm(shape, 0.7, &a, &b, 0.3, &mut expected).unwrap();
        let mut out = product.upload(&c).unwrap();
        product
            .gemm(
                shape,
                0.7,
                &product.upload(&a).unwrap(),
                &product.upload(&b).unwrap(),
                0.3,
                &mut out,
            )
            .unwrap();
        close(
            &format!("gemm {ta} {tb} {precision}"),
            &product.download(&out).unwrap(),
            &expected,
            *bound,
        );
    }
    // Batches gathered from resident entries, with and without values and denoising.
    for (values, denoising) in [
        (true, None),
        (false, None),
        (true, Some((0.3, 17))),
        (false, Some((0.2, 5))),
    ] {
        let x = sparse_rows(&mut rng, 40, 300, 0.1, values, false);
        let (centries, gentries) = (
            cpu.upload_entries(&x).unwrap(),
            gpu.upload_entries(&x).unwrap(),
        );
        let samples = [7usize, 0, 39, 7, 12, 3];
        let mut offsets = vec![0u32];
        let mut sources = Vec::new();
        for &s in &samples {
            let (start, end) = (x.offsets()[s], x.offsets()[s + 1]);
            offsets.push(offsets.last().unwrap() + (end - start) as u32);
            sources.push(start as u64);
        }
        let expected = cpu
            .gather_sparse(&centries, 300, &offsets, &sources, denoising)
            .unwrap();
        let got = gpu
            .gather_sparse(&gentries, 300, &offsets, &sources, denoising)
            .unwrap();
        assert_eq!(
            gpu.download_indices(&got.indices).unwrap(),
            expected.indices,
            "gathered columns"
        );
        assert_eq!(
            gpu.download_indices(&got.offsets).unwrap(),
            expected.offsets,
            "gathered offsets"
        );
        match (&got.values, &expected.values) {
            (Some(g), Some(c)) => assert_eq!(&gpu.download(g).unwrap(), c, "gathered values"),
            (None, None) => {}
            _ => panic!("values on one backend only"),
        }
        if let Some((p, _)) = denoising {
            let values = expected.values.as_ref().unwrap();
            let dropped = values.iter().filter(|v| **v == 0.0).count() as f64 / values.len() as f64;
            assert!(
                (dropped - p as f64).abs() < 0.1,
                "dropped {dropped}, asked {p}"
            );
        }
        assert!(
            gpu.gather_sparse(&gentries, 300, &[0, 5], &[x.nnz() as u64 - 2], None)
                .is_err(),
            "a row past the entries is an error"
        );
    }
    // 130 columns take the kernels' one-column path, 256 their four-column loads; dense rows
    // of the sparse batch (density 0.9) split over the block's warps.
    for (values, n, density) in [
        (true, 130, 0.05),
        (false, 130, 0.05),
        (true, 256, 0.9),
        (false, 256, 0.05),
    ] {
        let x = sparse_rows(&mut rng, 33, 500, density, values, false);
        let w = random_values(&mut rng, 500 * n, -1.0, 1.0);
        let (cx, gx) = (
            cpu.upload_sparse(&x).unwrap(),
            gpu.upload_sparse(&x).unwrap(),
        );
        let mut expected = vec![0.0; 33 * n];
        cpu.sparse_matmul(&cx, &w, n, 0.0, &mut expected).unwrap();
        let mut out = poisoned(&gpu, 33 * n);
        gpu.sparse_matmul(&gx, &gpu.upload(&w).unwrap(), n, 0.0, &mut out)
            .unwrap();
        let what = format!("{n} columns, values {values}, density {density}");
        close(
            &format!("sparse product, {what}"),
            &gpu.download(&out).unwrap(),
            &expected,
            1e-5,
        );
        let delta = random_values(&mut rng, 33 * n, -1.0, 1.0);
        let mut expected = w.clone();
        cpu.sparse_transpose_matmul(&cx, &delta, n, -0.3, &mut expected)
            .unwrap();
        let mut grad = gpu.upload(&w).unwrap();
        gpu.sparse_transpose_matmul(&gx, &gpu.upload(&delta).unwrap(), n, -0.3, &mut grad)
            .unwrap();
        close(
            &format!("sparse gradient, {what}"),
            &gpu.download(&grad).unwrap(),
            &expected,
            1e-5,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn single_products_through_cublaslt_and_cublas() {
    // A single product goes through cuBLASLt's measured algorithms where it is installed, and
    // through cuBLAS without it; both against the CPU, on shapes of one row, one column, a
    // sum of one term and one long enough for several algorithms to be measured, with an
    // output that must not be read (beta 0 on NaNs) and one accumulated onto twice (the
    // second product on the plan the first one measured, itself measured on a scratch copy).
    let cpu = CpuBackend::new();
    let backends = [
        (gpu(), 1e-5),
        (gpu().with_precision(Precision::Tf32), 5e-3),
        (gpu().without_cublaslt(), 1e-5),
    ];
    eprintln!("cuBLASLt installed: {}", backends[0].0.uses_cublaslt());
    assert!(!backends[2].0.uses_cublaslt());
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shapes = [
        (67, 130, 45),
        (1, 130, 45),
        (67, 1, 45),
        (67, 130, 1),
        (1, 1, 300),
        (96, 1500, 700),
    ];
    let transposes = [(false, false), (true, false), (false, true), (true, true)];
    for (variant, (gpu, bound)) in backends.iter().enumerate() {
        for ((m, n, k), (ta, tb)) in shapes
            .into_iter()
            .flat_map(|s| transposes.into_iter().map(move |t| (s, t)))
        {
            let what =
                format!("{m} x {n} x {k}, {ta} {tb}, backend {variant} (cuBLASLt, tf32, cuBLAS)");
            let shape = GemmShape {
                m,
                n,
                k,
                transpose_a: ta,
                transpose_b: tb,
            };
            // Positive operands: a sum that cancels to near zero would make the relative
            // error of a one-value product meaningless.
            let a = random_values(&mut rng, m * k, 0.1, 1.0);
            let b = random_values(&mut rng, k * n, 0.1, 1.0);
            let c = random_values(&mut rng, m * n, -1.0, 1.0);
            let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
            let mut expected = vec![0.0; m * n];
            cpu.gemm(shape, 0.7, &a, &b, 0.0, &mut expected).unwrap();
            let mut out = poisoned(gpu, m * n);
            gpu.gemm(shape, 0.7, &ga, &gb, 0.0, &mut out).unwrap();
            close(
                &format!("{what}, beta 0"),
                &gpu.download(&out).unwrap(),
                &expected,
                *bound,
            );
            let mut expected = c.clone();
            let mut out = gpu.upload(&c).unwrap();
            for _ in 0..2 {
                cpu.gemm(shape, -0.4, &a, &b, 1.0, &mut expected).unwrap();
                gpu.gemm(shape, -0.4, &ga, &gb, 1.0, &mut out).unwrap();
            }
            close(
                &format!("{what}, beta 1 twice"),
                &gpu.download(&out).unwrap(),
                &expected,
                *bound,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn activations_with_bias_and_element_wise_operations() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (rows, cols) = (37, 301);
    let z = random_values(&mut rng, rows * cols, -3.0, 3.0);
    let slope_values = random_values(&mut rng, cols, 0.0, 0.5);
    let gz = gpu.upload(&z).unwrap();
    let gslope = gpu.upload(&slope_values).unwrap();
    let bias_values = random_values(&mut rng, cols, -1.0, 1.0);
    let gbias = gpu.upload(&bias_values).unwrap();
    for (activation, with_bias) in activations()
        .into_iter()
        .flat_map(|a| [(a, true), (a, false)])
    {
        let slope = matches!(activation, Activation::ParametricRectifiedLinear { .. });
        let mut a = vec![0.0; rows * cols];
        let mut biased = z.clone();
        cpu.activation_forward(
            activation,
            Shape::new(rows, cols),
            with_bias.then_some(&bias_values),
            &mut biased,
            slope.then_some(&slope_values),
            &mut a,
        )
        .unwrap();
        let mut ga = poisoned(&gpu, rows * cols);
        let mut gbiased = gpu.upload(&z).unwrap();
        gpu.activation_forward(
            activation,
            Shape::new(rows, cols),
            with_bias.then_some(&gbias),
            &mut gbiased,
            slope.then_some(&gslope),
            &mut ga,
        )
        .unwrap();
        let what = format!("{activation:?} forward, bias {with_bias}");
        close(&what, &gpu.download(&ga).unwrap(), &a, 1e-5);
        close(
            &format!("{what}: sums"),
            &gpu.download(&gbiased).unwrap(),
            &biased,
            1e-6,
        );
        let z = &biased;
        let gz = &gbiased;
        let delta = random_values(&mut rng, rows * cols, -1.0, 1.0);
        let mut expected = delta.clone();
        cpu.activation_backward(
            activation,
            Shape::new(rows, cols),
            z,
            &a,
            slope.then_some(&slope_values),
            &mut expected,
        )
        .unwrap();
        let mut gd = gpu.upload(&delta).unwrap();
        gpu.activation_backward(
            activation,
            Shape::new(rows, cols),
            gz,
            &gpu.upload(&a).unwrap(),
            slope.then_some(&gslope),
            &mut gd,
        )
        .unwrap();
        close(
            &format!("{activation:?} backward"),
            &gpu.download(&gd).unwrap(),
            &expected,
            1e-5,
        );
    }
    let delta = random_values(&mut rng, rows * cols, -1.0, 1.0);
    let gdelta = gpu.upload(&delta).unwrap();
    let bias = bias_values;
    let mut expected = bias.clone();
    cpu.bias_gradient(Shape::new(rows, cols), &delta, 0.5, &mut expected)
        .unwrap();
    let mut grad = gpu.upload(&bias).unwrap();
    gpu.bias_gradient(Shape::new(rows, cols), &gdelta, 0.5, &mut grad)
        .unwrap();
    close(
        "bias gradient",
        &gpu.download(&grad).unwrap(),
        &expected,
        1e-5,
    );
    let mut expected = bias.clone();
    cpu.slope_gradient(Shape::new(rows, cols), &z, &delta, 0.5, &mut expected)
        .unwrap();
    let mut grad = gpu.upload(&bias).unwrap();
    gpu.slope_gradient(Shape::new(rows, cols), &gz, &gdelta, 0.5, &mut grad)
        .unwrap();
    close(
        "slope gradient",
        &gpu.download(&grad).unwrap(),
        &expected,
        1e-5,
    );
    // Dropout: the same units are dropped on both, for a block of a wider matrix too.
    let window = ColumnWindow {
        offset: 3,
        total: cols + 5,
    };
    let mut expected = z.clone();
    cpu.dropout(Shape::new(rows, cols), window, 0.3, 99, &mut expected)
        .unwrap();
    let mut dropped = gpu.upload(&z).unwrap();
    gpu.dropout(Shape::new(rows, cols), window, 0.3, 99, &mut dropped)
        .unwrap();
    let dropped = gpu.download(&dropped).unwrap();
    assert!(
        dropped
            .iter()
            .zip(&expected)
            .all(|(g, c)| (*g == 0.0) == (*c == 0.0)),
        "dropout masks differ"
    );
    close("dropout", &dropped, &expected, 1e-6);
    // Strided copies: a block of columns into a wider matrix, added, then copied back.
    let from = Strided {
        offset: 2,
        stride: cols,
    };
    let to = Strided {
        offset: 1,
        stride: cols + 4,
    };
    let mut expected = vec![0.5; 1 + rows * (cols + 4)];
    let mut wide = gpu.upload(&expected).unwrap();
    cpu.copy_matrix(
        Shape::new(rows - 1, cols - 2),
        &z,
        from,
        &mut expected,
        to,
        true,
    )
    .unwrap();
    gpu.copy_matrix(
        Shape::new(rows - 1, cols - 2),
        &gpu.upload(&z).unwrap(),
        from,
        &mut wide,
        to,
        true,
    )
    .unwrap();
    close(
        "accumulated copy",
        &gpu.download(&wide).unwrap(),
        &expected,
        1e-7,
    );
    let mut back = vec![0.0; rows * cols];
    let mut gpu_back = gpu.upload(&back).unwrap();
    cpu.copy_matrix(
        Shape::new(rows - 1, cols - 2),
        &expected,
        to,
        &mut back,
        from,
        false,
    )
    .unwrap();
    gpu.copy_matrix(
        Shape::new(rows - 1, cols - 2),
        &wide,
        to,
        &mut gpu_back,
        from,
        false,
    )
    .unwrap();
    close("copy", &gpu.download(&gpu_back).unwrap(), &back, 1e-7);
    let activations = random_values(&mut rng, rows * cols, 0.05, 0.95);
    let mut expected = delta.clone();
    let mut loss = vec![0.0];
    cpu.sparseness_penalty(
        Shape::new(rows, cols),
        &activations,
        0.3,
        2.0,
        &mut expected,
        &mut loss,
    )
    .unwrap();
    let mut gd = gpu.upload(&delta).unwrap();
    let mut gloss = gpu.zeros(1).unwrap();
    gpu.sparseness_penalty(
        Shape::new(rows, cols),
        &gpu.upload(&activations).unwrap(),
        0.3,
        2.0,
        &mut gd,
        &mut gloss,
    )
    .unwrap();
    close(
        "sparseness penalty",
        &gpu.download(&gd).unwrap(),
        &expected,
        1e-5,
    );
    close(
        "sparseness penalty loss",
        &gpu.download(&gloss).unwrap(),
        &loss,
        1e-4,
    );
    let mut x = vec![0.0; 10];
    let mut gx = poisoned(&gpu, 10);
    cpu.fill(&mut x, 10, 2.5).unwrap();
    gpu.fill(&mut gx, 10, 2.5).unwrap();
    gpu.axpy(10, 2.0, &gpu.upload(&x).unwrap(), &mut gx)
        .unwrap();
    close(
        "fill and axpy",
        &gpu.download(&gx).unwrap(),
        &[7.5; 10],
        1e-7,
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn output_deltas_and_losses() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let rows = 29;
    // Beside every case of the gradient checks, one whose clamped logarithms finite
    // differences cannot follow.
    let cases = output_cases().into_iter().chain([(
        ErrorFunction::ScaledMarginalCrossEntropy(MARGINAL),
        Activation::Linear,
    )]);
    // 203 columns take the kernel's one-unit path, 204 its four-unit loads.
    for (cols, (error, activation)) in [203, 204]
        .into_iter()
        .flat_map(|cols| cases.clone().map(move |case| (cols, case)))
    {
        let z = random_values(&mut rng, rows * cols, -3.0, 3.0);
        let bias = random_values(&mut rng, cols, -1.0, 1.0);
        let (gz, gbias) = (gpu.upload(&z).unwrap(), gpu.upload(&bias).unwrap());
        let x = sparse_rows(
            &mut rng,
            rows,
            cols,
            0.05,
            matches!(error, ErrorFunction::DataScaledMarginalCrossEntropy(_)),
            false,
        );
        // Half the dense targets zero, so that both weights of a boost apply.
        let dense: Vec<f32> = random_values(&mut rng, rows * cols, -1.0, 1.0)
            .into_iter()
            .map(|t| t.max(0.0))
            .collect();
        let (cx, gx) = (
            cpu.upload_sparse(&x).unwrap(),
            gpu.upload_sparse(&x).unwrap(),
        );
        let gdense = gpu.upload(&dense).unwrap();
        let none = DeltaBoost::default();
        let boost = DeltaBoost {
            one: 3.0,
            zero: 0.5,
        };
        for (sparse_target, with_bias, boost) in [
            (true, true, none),
            (false, true, none),
            (true, false, none),
            (true, true, boost),
            (false, true, boost),
        ] {
            let mut delta = vec![0.0; rows * cols];
            let mut loss = vec![0.0];
            let target = if sparse_target {
                Target::Sparse {
                    entries: &cx,
                    first_column: 0,
                }
            } else {
                Target::Dense(&dense)
            };
            let output = OutputLayer {
                error,
                boost,
                activation,
                bias: with_bias.then_some(&bias),
                slope: None,
            };
            cpu.output_delta(
                output,
                Shape::new(rows, cols),
                &z,
                target,
                &mut delta,
                &mut loss,
            )
            .unwrap();
            let mut gd = poisoned(&gpu, rows * cols);
            let mut gloss = gpu.zeros(1).unwrap();
            let target = if sparse_target {
                Target::Sparse {
                    entries: &gx,
                    first_column: 0,
                }
            } else {
                Target::Dense(&gdense)
            };
            let output = OutputLayer {
                error,
                boost,
                activation,
                bias: with_bias.then_some(&gbias),
                slope: None,
            };
            gpu.output_delta(
                output,
                Shape::new(rows, cols),
                &gz,
                target,
                &mut gd,
                &mut gloss,
            )
            .unwrap();
            let what = format!(
                "{error:?} with {activation:?}, {cols} columns, sparse target {sparse_target}, bias {with_bias}, {boost:?}"
            );
            close(&what, &gpu.download(&gd).unwrap(), &delta, 1e-4);
            close(
                &format!("{what}: loss"),
                &gpu.download(&gloss).unwrap(),
                &loss,
                1e-4,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn optimizers_max_norm_and_top_k() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 1000;
    let kinds = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum { momentum: 0.9 },
        OptimizerKind::Nesterov { momentum: 0.9 },
        OptimizerKind::AdaGrad { epsilon: 1e-8 },
        OptimizerKind::RmsProp {
            rho: 0.9,
            epsilon: 1e-8,
        },
        OptimizerKind::AdaDelta {
            rho: 0.95,
            epsilon: 1e-6,
        },
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        },
    ];
    for kind in kinds {
        let w = random_values(&mut rng, n, -1.0, 1.0);
        let g = random_values(&mut rng, n, -1.0, 1.0);
        let mut state: Vec<Vec<f32>> = (0..kind.state_count())
            .map(|_| random_values(&mut rng, n, 0.0, 0.5))
            .collect();
        let mut gstate: Vec<_> = state.iter().map(|s| gpu.upload(s).unwrap()).collect();
        let step = OptimizerStep {
            kind,
            learning_rate: 0.05,
            l1: 0.001,
            l2: 0.01,
            step: 3,
        };
        let mut expected = w.clone();
        cpu.optimizer_step(&step, n, &mut expected, &g, &mut state)
            .unwrap();
        let mut gw = gpu.upload(&w).unwrap();
        gpu.optimizer_step(&step, n, &mut gw, &gpu.upload(&g).unwrap(), &mut gstate)
            .unwrap();
        close(
            &format!("{kind:?}"),
            &gpu.download(&gw).unwrap(),
            &expected,
            1e-5,
        );
        for (s, gs) in state.iter().zip(&gstate) {
            close(
                &format!("{kind:?} state"),
                &gpu.download(gs).unwrap(),
                s,
                1e-5,
            );
        }
    }
    let w = random_values(&mut rng, 50 * 20, -1.0, 1.0);
    let mut expected = w.clone();
    cpu.max_norm(Shape::new(50, 20), 2.0, &mut expected)
        .unwrap();
    let mut gw = gpu.upload(&w).unwrap();
    gpu.max_norm(Shape::new(50, 20), 2.0, &mut gw).unwrap();
    close("max norm", &gpu.download(&gw).unwrap(), &expected, 1e-6);

    // Rows in shared memory (filtered, with four-score loads and without; and by radix
    // select, for large K, short rows, and ties too many to filter), and rows too wide for
    // it, cut into tiles whose candidates are selected again: one round of tiles, two (K =
    // 1000 of a million), three (ten million columns), every score tied across tiles, and
    // scores mostly zero as a rectifier leaves them (tiles with fewer than K above the ties).
    #[derive(Clone, Copy, PartialEq)]
    enum Scores {
        Random,
        Tied,
        MostlyZero,
    }
    for (rows, cols, k, kind) in [
        (64, 26_744, 100, Scores::Random),
        (7, 1001, 30, Scores::Random),
        (5, 3000, 1000, Scores::Random),
        (3, 50, 70, Scores::Random),
        (2, 4000, 10, Scores::Tied),
        (4, 70_001, 50, Scores::Random),
        (3, 1_000_000, 1000, Scores::Random),
        (1, 10_000_000, 100, Scores::Random),
        (2, 300_000, 100, Scores::Tied),
        (3, 200_003, 100, Scores::MostlyZero),
    ] {
        let mut scores = match kind {
            Scores::Random => random_values(&mut rng, rows * cols, -5.0, 5.0),
            Scores::Tied => vec![0.5; rows * cols],
            Scores::MostlyZero => random_values(&mut rng, rows * cols, -5.0, 5.0)
                .into_iter()
                .map(|v| if v > 4.99 { v } else { 0.0 })
                .collect(),
        };
        scores[7] = scores[8]; // a tie, broken by the lower column
        let exclude = sparse_rows(&mut rng, rows, cols, 0.02, false, false);
        let (cx, gx) = (
            cpu.upload_sparse(&exclude).unwrap(),
            gpu.upload_sparse(&exclude).unwrap(),
        );
        let gscores = gpu.upload(&scores).unwrap();
        for excluded in [true, false] {
            let expected = cpu
                .top_k(
                    Shape::new(rows, cols),
                    &scores,
                    k,
                    excluded.then_some(&cx),
                    0,
                )
                .unwrap();
            let got = gpu
                .top_k(
                    Shape::new(rows, cols),
                    &gscores,
                    k,
                    excluded.then_some(&gx),
                    0,
                )
                .unwrap();
            let got = gpu.read_top_k(got).unwrap();
            assert_eq!(
                got.0, expected.0,
                "top-{k} columns of {rows} x {cols}, excluding {excluded}"
            );
            assert_eq!(got.1, expected.1, "top-{k} scores");
        }
    }
}

/// A window of `kernel`, `stride` and `padding` sliding from `input` over every output
/// position it fits, onto `channels` channels.
fn sliding(
    input: Grid,
    channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Sliding {
    let spatial =
        std::array::from_fn(|d| (input.spatial[d] + 2 * padding[d] - kernel[d]) / stride[d] + 1);
    Sliding {
        input,
        output: Grid::new(spatial, channels),
        window: Window {
            kernel,
            stride,
            padding,
        },
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn convolutions_and_channel_biases() {
    let cpu = CpuBackend::new();
    // cuDNN where it is installed (the cases with symmetric padding; the others fall back);
    // Destiny's own products with the default scratch, which unrolls each batch whole; and
    // with 16 KiB, which unrolls one sample or a few at a time (two of the stride-2 case's
    // seven, three then one of the 1D case's four forward and two and two for its filters),
    // the single-sample chunks skipping the reordering of the deltas, as do the deltas of one
    // channel.
    let gpus = [
        gpu(),
        gpu().without_cudnn(),
        gpu().without_cudnn().with_convolution_scratch(16 << 10),
    ];
    eprintln!("cuDNN installed: {}", gpus[0].uses_cudnn());
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    #[rustfmt::skip]
    let cases = [
        ("2D, 7 x 7 padded by 3", sliding(Grid::new([32, 32, 1], 3), 8, [7, 7, 1], [1, 1, 1], [3, 3, 0]), 5),
        ("2D, stride 2", sliding(Grid::new([15, 13, 1], 4), 6, [3, 3, 1], [2, 2, 1], [0, 0, 0]), 7),
        ("1D", sliding(Grid::new([50, 1, 1], 5), 3, [5, 1, 1], [1, 1, 1], [2, 0, 0]), 4),
        ("3D", sliding(Grid::new([7, 6, 5], 2), 4, [3, 3, 3], [1, 2, 1], [1, 1, 0]), 3),
        ("one output channel", sliding(Grid::new([9, 8, 1], 3), 1, [2, 3, 1], [1, 2, 1], [1, 0, 0]), 6),
    ];
    for ((name, sliding, rows), (variant, gpu)) in cases
        .into_iter()
        .flat_map(|case| gpus.iter().enumerate().map(move |g| (case, g)))
    {
        let what = format!("{name}, backend {variant} (cuDNN, own, own chunked)");
        let (input, output) = (rows * sliding.input.len(), rows * sliding.output.len());
        let x = random_values(&mut rng, input, -1.0, 1.0);
        let w = random_values(&mut rng, sliding.filter_len(), -1.0, 1.0);
        let (gx, gw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
        // beta 0 reads nothing of z (NaN here), and writes nothing past the output.
        let mut expected = vec![0.0; output];
        cpu.convolution_forward(sliding, rows, &x, &w, 0.0, &mut expected)
            .unwrap();
        let mut gz = poisoned(gpu, output + 5);
        gpu.convolution_forward(sliding, rows, &gx, &gw, 0.0, &mut gz)
            .unwrap();
        let got = gpu.download(&gz).unwrap();
        close(&format!("{what}: forward"), &got[..output], &expected, 1e-5);
        assert!(
            got[output..].iter().all(|v| v.is_nan()),
            "{what}: wrote past z"
        );
        let z = random_values(&mut rng, output, -1.0, 1.0);
        let mut expected = z.clone();
        cpu.convolution_forward(sliding, rows, &x, &w, 0.5, &mut expected)
            .unwrap();
        let mut gz = gpu.upload(&z).unwrap();
        gpu.convolution_forward(sliding, rows, &gx, &gw, 0.5, &mut gz)
            .unwrap();
        close(
            &format!("{what}: forward, beta 0.5"),
            &gpu.download(&gz).unwrap(),
            &expected,
            1e-5,
        );
        let delta = random_values(&mut rng, output, -1.0, 1.0);
        let gdelta = gpu.upload(&delta).unwrap();
        let dx = random_values(&mut rng, input, -1.0, 1.0);
        let mut expected = dx.clone();
        cpu.convolution_backward_data(sliding, rows, &delta, &w, &mut expected)
            .unwrap();
        let mut gdx = gpu.upload(&dx).unwrap();
        gpu.convolution_backward_data(sliding, rows, &gdelta, &gw, &mut gdx)
            .unwrap();
        close(
            &format!("{what}: input deltas"),
            &gpu.download(&gdx).unwrap(),
            &expected,
            1e-5,
        );
        let grad = random_values(&mut rng, sliding.filter_len(), -1.0, 1.0);
        let mut expected = grad.clone();
        cpu.convolution_backward_filter(sliding, rows, &x, &delta, -0.3, &mut expected)
            .unwrap();
        let mut ggrad = gpu.upload(&grad).unwrap();
        gpu.convolution_backward_filter(sliding, rows, &gx, &gdelta, -0.3, &mut ggrad)
            .unwrap();
        close(
            &format!("{what}: filter gradient"),
            &gpu.download(&ggrad).unwrap(),
            &expected,
            1e-5,
        );
    }
    let gpu = &gpus[0];
    let (grid, rows) = (Grid::new([7, 5, 1], 6), 4);
    let z = random_values(&mut rng, rows * grid.len(), -1.0, 1.0);
    let bias = random_values(&mut rng, grid.channels, -1.0, 1.0);
    let mut expected = z.clone();
    cpu.channel_bias(grid, rows, &bias, &mut expected).unwrap();
    let mut gz = gpu.upload(&z).unwrap();
    gpu.channel_bias(grid, rows, &gpu.upload(&bias).unwrap(), &mut gz)
        .unwrap();
    close("channel bias", &gpu.download(&gz).unwrap(), &expected, 1e-6);
    let mut expected = bias.clone();
    cpu.channel_bias_gradient(grid, rows, &z, 0.5, &mut expected)
        .unwrap();
    let mut grad = gpu.upload(&bias).unwrap();
    gpu.channel_bias_gradient(grid, rows, &gpu.upload(&z).unwrap(), 0.5, &mut grad)
        .unwrap();
    close(
        "channel bias gradient",
        &gpu.download(&grad).unwrap(),
        &expected,
        1e-5,
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn poolings() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let pooling = |input: Grid, kernel, stride, padding| {
        sliding(input, input.channels, kernel, stride, padding)
    };
    #[rustfmt::skip]
    let cases = [
        ("3 x 3, stride 2, padded", pooling(Grid::new([9, 8, 1], 3), [3, 3, 1], [2, 2, 1], [1, 1, 0]), 4),
        ("2 x 2, stride 2", pooling(Grid::new([10, 7, 1], 2), [2, 2, 1], [2, 2, 1], [0, 0, 0]), 3),
        ("3D, padded", pooling(Grid::new([5, 6, 4], 2), [2, 3, 2], [1, 2, 2], [1, 1, 1]), 2),
        ("1D, padded", pooling(Grid::new([11, 1, 1], 4), [4, 1, 1], [3, 1, 1], [2, 0, 0]), 3),
    ];
    for ((name, sliding, rows), kind, tied) in cases.into_iter().flat_map(|case| {
        [
            (Pooling::Max, false),
            (Pooling::Max, true),
            (Pooling::Average, false),
        ]
        .map(|(kind, tied)| (case, kind, tied))
    }) {
        let what = format!("{kind:?} pooling, {name}, ties {tied}");
        let (input, output) = (rows * sliding.input.len(), rows * sliding.output.len());
        // Distinct inputs have one maximum a window; three levels tie often, and the first
        // of the tied must receive the gradient on both backends.
        let x: Vec<f32> = if tied {
            random_values(&mut rng, input, -1.5, 1.5)
                .into_iter()
                .map(f32::round)
                .collect()
        } else {
            let mut x: Vec<f32> = (0..input).map(|i| i as f32 * 0.01 - 1.0).collect();
            x.shuffle(&mut rng);
            x
        };
        let gx = gpu.upload(&x).unwrap();
        let mut y = vec![0.0; output];
        cpu.pooling_forward(kind, sliding, rows, &x, &mut y)
            .unwrap();
        let mut gy = poisoned(&gpu, output);
        gpu.pooling_forward(kind, sliding, rows, &gx, &mut gy)
            .unwrap();
        close(
            &format!("{what}: forward"),
            &gpu.download(&gy).unwrap(),
            &y,
            1e-6,
        );
        let dy = random_values(&mut rng, output, -1.0, 1.0);
        let dx = random_values(&mut rng, input, -1.0, 1.0);
        let mut expected = dx.clone();
        cpu.pooling_backward(kind, sliding, rows, &x, &y, &dy, &mut expected)
            .unwrap();
        let mut gdx = gpu.upload(&dx).unwrap();
        gpu.pooling_backward(
            kind,
            sliding,
            rows,
            &gx,
            &gy,
            &gpu.upload(&dy).unwrap(),
            &mut gdx,
        )
        .unwrap();
        close(
            &format!("{what}: backward"),
            &gpu.download(&gdx).unwrap(),
            &expected,
            1e-6,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn local_response_normalization() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (grid, rows) = (Grid::new([6, 5, 1], 7), 3);
    let len = rows * grid.len();
    // DSSTNE's, an even window (longer after the channel than before), a window of one
    // channel, and one wider than the channels.
    let responses = [
        LocalResponse::DSSTNE,
        LocalResponse {
            k: 1.0,
            n: 4,
            alpha: 0.5,
            beta: 0.75,
        },
        LocalResponse {
            k: 2.0,
            n: 1,
            alpha: 1.0,
            beta: 0.5,
        },
        LocalResponse {
            k: 1.5,
            n: 9,
            alpha: 2.0,
            beta: 0.6,
        },
    ];
    for response in responses {
        let what = format!("{response:?}");
        let x = random_values(&mut rng, len, -2.0, 2.0);
        let gx = gpu.upload(&x).unwrap();
        let mut y = vec![0.0; len];
        cpu.local_response_forward(response, grid, rows, &x, &mut y)
            .unwrap();
        let mut gy = poisoned(&gpu, len);
        gpu.local_response_forward(response, grid, rows, &gx, &mut gy)
            .unwrap();
        close(
            &format!("{what}: forward"),
            &gpu.download(&gy).unwrap(),
            &y,
            1e-5,
        );
        let dy = random_values(&mut rng, len, -1.0, 1.0);
        let dx = random_values(&mut rng, len, -1.0, 1.0);
        let mut expected = dx.clone();
        cpu.local_response_backward(response, grid, rows, &x, &y, &dy, &mut expected)
            .unwrap();
        let mut gdx = gpu.upload(&dx).unwrap();
        gpu.local_response_backward(
            response,
            grid,
            rows,
            &gx,
            &gy,
            &gpu.upload(&dy).unwrap(),
            &mut gdx,
        )
        .unwrap();
        close(
            &format!("{what}: backward"),
            &gpu.download(&gdx).unwrap(),
            &expected,
            1e-5,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn batch_normalization() {
    let (cpu, gpu) = (CpuBackend::new(), gpu());
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // Per unit and per channel, and single samples: one value a unit (the unbiased variance
    // falls back to the biased), several a channel.
    let cases = [
        (Grid::new([5, 1, 1], 4), false, 8),
        (Grid::new([6, 5, 1], 3), true, 8),
        (Grid::new([4, 3, 2], 5), true, 1),
        (Grid::new([3, 1, 1], 2), false, 1),
    ];
    for (grid, per_channel, rows) in cases {
        let normalization = Normalization {
            grid,
            per_channel,
            epsilon: Normalization::EPSILON,
        };
        let what = format!("{grid:?}, per channel {per_channel}, {rows} rows");
        let (groups, len) = (normalization.groups(), rows * grid.len());
        let x = random_values(&mut rng, len, -2.0, 3.0);
        let scale = random_values(&mut rng, groups, 0.5, 1.5);
        let shift = random_values(&mut rng, groups, -1.0, 1.0);
        let mean = random_values(&mut rng, groups, -0.5, 0.5);
        let variance = random_values(&mut rng, groups, 0.5, 2.0);
        let (gx, gscale, gshift) = (
            gpu.upload(&x).unwrap(),
            gpu.upload(&scale).unwrap(),
            gpu.upload(&shift).unwrap(),
        );
        // Training: the output, the saved statistics and the running ones.
        let (mut running_mean, mut running_variance) = (mean.clone(), variance.clone());
        let (mut saved_mean, mut saved_inverse) = (vec![0.0; groups], vec![0.0; groups]);
        let mut y = vec![0.0; len];
        let pass = NormalizationPass::Training {
            factor: 0.1,
            running_mean: &mut running_mean,
            running_variance: &mut running_variance,
            saved_mean: &mut saved_mean,
            saved_inverse_deviation: &mut saved_inverse,
        };
        cpu.batch_norm_forward(normalization, rows, &x, &scale, &shift, pass, &mut y)
            .unwrap();
        let (mut grunning_mean, mut grunning_variance) =
            (gpu.upload(&mean).unwrap(), gpu.upload(&variance).unwrap());
        let (mut gsaved_mean, mut gsaved_inverse) =
            (poisoned(&gpu, groups), poisoned(&gpu, groups));
        let mut gy = poisoned(&gpu, len);
        let pass = NormalizationPass::Training {
            factor: 0.1,
            running_mean: &mut grunning_mean,
            running_variance: &mut grunning_variance,
            saved_mean: &mut gsaved_mean,
            saved_inverse_deviation: &mut gsaved_inverse,
        };
        gpu.batch_norm_forward(normalization, rows, &gx, &gscale, &gshift, pass, &mut gy)
            .unwrap();
        for (part, got, expected, bound) in [
            ("training", &gy, &y, 1e-5),
            ("running mean", &grunning_mean, &running_mean, 1e-5),
            (
                "running variance",
                &grunning_variance,
                &running_variance,
                1e-5,
            ),
            ("saved mean", &gsaved_mean, &saved_mean, 1e-5),
            (
                "saved inverse deviation",
                &gsaved_inverse,
                &saved_inverse,
                1e-5,
            ),
        ] {
            close(
                &format!("{what}: {part}"),
                &gpu.download(got).unwrap(),
                expected,
                bound,
            );
        }
        // Inference, by the running statistics.
        let mut expected = vec![0.0; len];
        let pass = NormalizationPass::Inference {
            running_mean: &mean,
            running_variance: &variance,
        };
        cpu.batch_norm_forward(normalization, rows, &x, &scale, &shift, pass, &mut expected)
            .unwrap();
        let (gmean, gvariance) = (gpu.upload(&mean).unwrap(), gpu.upload(&variance).unwrap());
        let pass = NormalizationPass::Inference {
            running_mean: &gmean,
            running_variance: &gvariance,
        };
        let mut gy = poisoned(&gpu, len);
        gpu.batch_norm_forward(normalization, rows, &gx, &gscale, &gshift, pass, &mut gy)
            .unwrap();
        close(
            &format!("{what}: inference"),
            &gpu.download(&gy).unwrap(),
            &expected,
            1e-5,
        );
        // Backward from each backend's saved statistics: dx written, gradients added.
        let dy = random_values(&mut rng, len, -1.0, 1.0);
        let scale_gradient = random_values(&mut rng, groups, -1.0, 1.0);
        let shift_gradient = random_values(&mut rng, groups, -1.0, 1.0);
        let (mut scale_expected, mut shift_expected) =
            (scale_gradient.clone(), shift_gradient.clone());
        let mut dx = vec![0.0; len];
        cpu.batch_norm_backward(
            normalization,
            rows,
            &x,
            &dy,
            &scale,
            &saved_mean,
            &saved_inverse,
            0.7,
            &mut scale_expected,
            &mut shift_expected,
            &mut dx,
        )
        .unwrap();
        let (mut gscale_gradient, mut gshift_gradient) = (
            gpu.upload(&scale_gradient).unwrap(),
            gpu.upload(&shift_gradient).unwrap(),
        );
        let mut gdx = poisoned(&gpu, len);
        gpu.batch_norm_backward(
            normalization,
            rows,
            &gx,
            &gpu.upload(&dy).unwrap(),
            &gscale,
            &gsaved_mean,
            &gsaved_inverse,
            0.7,
            &mut gscale_gradient,
            &mut gshift_gradient,
            &mut gdx,
        )
        .unwrap();
        for (part, got, expected) in [
            ("input deltas", &gdx, &dx),
            ("scale gradient", &gscale_gradient, &scale_expected),
            ("shift gradient", &gshift_gradient, &shift_expected),
        ] {
            close(
                &format!("{what}: {part}"),
                &gpu.download(got).unwrap(),
                expected,
                1e-4,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn running_out_of_memory_is_a_clear_error() {
    let gpu = gpu();
    // A terabyte: more than any GPU holds.
    let error = gpu.zeros(1 << 38).unwrap_err().to_string();
    assert!(
        error.contains("out of GPU memory") && error.contains("MB asked for"),
        "{error}"
    );
    // The backend goes on working.
    let x = gpu.upload(&[1.0, 2.0]).unwrap();
    assert_eq!(gpu.download(&x).unwrap(), vec![1.0, 2.0]);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn an_allocation_beyond_free_memory_is_an_error_with_the_figures() {
    let gpu = gpu();
    let free = gpu.available_memory().expect("free memory");
    // Another holder takes all but 256 MiB, after any check could have seen it.
    let hog = gpu.zeros(((free - (256 << 20)) / 4) as usize).unwrap();
    let error = gpu.zeros(128 << 20).unwrap_err().to_string();
    assert!(
        error.contains("out of GPU memory: 536.9 MB asked for") && error.contains("MB free of"),
        "{error}"
    );
    // The failure leaves the device usable.
    drop(hog);
    gpu.zeros(128 << 20).unwrap();
}
