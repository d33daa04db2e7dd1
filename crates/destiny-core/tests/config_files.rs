//! DSSTNE's definition language: files that load, and errors that name the key and line.

use destiny_core::config::*;
use std::path::Path;

fn parse(text: &str) -> Result<NetworkDefinition, String> {
    parse_network(text, "test.json").map_err(|e| e.to_string())
}

fn error_of(text: &str) -> String {
    parse(text).expect_err("the definition should be rejected")
}

#[test]
fn the_movielens_autoencoder_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/movielens/config.json");
    let definition = parse_network_file(&path).unwrap();
    assert_eq!(definition.layers.len(), 3);
    let [input, hidden, output] = &definition.layers[..] else {
        unreachable!()
    };
    assert_eq!(
        (input.kind, input.width, input.dataset.as_deref()),
        (LayerKind::Input, Width::Auto, Some("gl_input"))
    );
    assert!(input.sparse);
    assert_eq!(
        (hidden.width, hidden.activation),
        (Width::Fixed(128), Activation::Sigmoid)
    );
    assert_eq!(hidden.sources, vec!["Input".to_string()]);
    assert_eq!(
        hidden.sparseness_penalty,
        Some(SparsenessPenalty { p: 0.5, beta: 2.0 })
    );
    assert_eq!(output.sources, vec!["Hidden".to_string()]);
    assert_eq!(output.dataset.as_deref(), Some("gl_output"));
    assert_eq!(
        definition.error_function,
        ErrorFunction::ScaledMarginalCrossEntropy(MarginalParameters {
            one_target: 1.0,
            zero_target: 0.0,
            one_scale: 1.0,
            zero_scale: 1.0
        })
    );
    assert_eq!(definition.denoising, Some(0.2));
}

#[test]
fn case_aliases_lists_and_defaults() {
    let definition = parse(
        r#"{
        "version": 0.8, "NAME": "mixed", "kind": "autoencoder", "errorfunction": "cross entropy",
        // comments are allowed, as DSSTNE's parser allows them
        "RELUSLOPE": 0.2,
        "layers": [
            { "kind": "input", "name": "In", "n": [10, 3], "dataset": "a" },
            { "KIND": "Hidden", "Name": "H1", "N": 8, "activation": "lrelu", "WeightInit": { "scheme": "gaussian", "SCALE": 0.1, "bias": 0.5 } },
            { "Kind": "Hidden", "Name": "H2", "N": 8, "Activation": "SELU", "Skip": "H1", "pDropout": 0.5 },
            { "Kind": "Hidden", "Name": "H3", "N": 8, "Activation": "prelu", "Slope": 0.3, "WeightNorm": 2 },
            { "Kind": "Output", "Name": "Out", "Source": ["H2", "H3"], "DataSet": "b", "Activation": "SoftMax" }
        ]
    }"#,
    )
    .unwrap();
    assert_eq!(definition.kind, NetworkKind::AutoEncoder);
    assert_eq!(definition.error_function, ErrorFunction::CrossEntropy);
    assert!(definition.shuffle_indices, "DSSTNE shuffles by default");
    let layers = &definition.layers;
    assert_eq!(layers[0].width, Width::Fixed(30));
    assert_eq!(
        layers[1].activation,
        Activation::LeakyRectifiedLinear { slope: 0.2 }
    );
    assert_eq!(
        layers[1].weight_init,
        WeightInit {
            scheme: WeightInitScheme::Gaussian,
            scale: 0.1,
            bias: 0.5
        }
    );
    assert_eq!(layers[1].sources, vec!["In".to_string()]);
    assert_eq!(
        layers[2].activation,
        Activation::ScaledExponentialLinear {
            alpha: 1.673_263_2,
            lambda: 1.050_701
        }
    );
    assert_eq!(
        (layers[2].skips.clone(), layers[2].dropout),
        (vec!["H1".to_string()], 0.5)
    );
    assert_eq!(
        layers[3].activation,
        Activation::ParametricRectifiedLinear { slope: 0.3 }
    );
    assert_eq!(layers[3].weight_norm, 2.0);
    assert_eq!(layers[4].sources, vec!["H2".to_string(), "H3".to_string()]);
    assert_eq!(
        layers[4].width,
        Width::Auto,
        "output width comes from the data when N is left out"
    );
}

#[test]
fn tied_weights() {
    let definition = parse(
        r#"{ "Kind": "FeedForward", "Layers": [
            { "Kind": "Input", "Name": "Input", "N": "auto", "DataSet": "x", "Sparse": true },
            { "Kind": "Hidden", "Name": "Code", "N": 16 },
            { "Kind": "Output", "Name": "Output", "N": "auto", "DataSet": "x",
              "SharedWeights": { "SourceInputLayer": "Input", "SourceOutputLayer": "Code", "InputLayer": "Code", "Transposed": true } }
        ], "ErrorFunction": "L2" }"#,
    )
    .unwrap();
    assert_eq!(
        definition.layers[2].shared_weights,
        vec![SharedWeight {
            input_layer: "Code".into(),
            source_input_layer: "Input".into(),
            source_output_layer: "Code".into(),
            transposed: true
        }]
    );
}

#[test]
fn unknown_and_misspelled_keys_name_the_key_and_line() {
    let error = error_of("{\n  \"Name\": \"x\",\n  \"Layerz\": []\n}");
    assert!(
        error.contains("test.json:3:3") && error.contains("unknown key 'Layerz' in the network"),
        "{error}"
    );
    let error = error_of(
        "{ \"Layers\": [\n { \"Kind\": \"Input\", \"DataSet\": \"a\", \"N\": 3 },\n { \"Kind\": \"Hidden\", \"Name\": \"H\", \"N\": 4, \"Activaton\": \"Tanh\" }\n] }",
    );
    assert!(
        error.contains("test.json:3:") && error.contains("'Activaton' in layer 'H'"),
        "{error}"
    );
    let error = error_of(
        "{ \"Layers\": [ { \"Kind\": \"Input\", \"DataSet\": \"a\", \"N\": 3 },\n { \"Kind\": \"Hidden\", \"N\": 4, \"WeightInit\": { \"Schema\": \"Xavier\" } } ] }",
    );
    assert!(
        error.contains(":2:") && error.contains("'Schema' in WeightInit of layer 'Hidden1'"),
        "{error}"
    );
}

#[test]
fn wrong_types_and_values_are_errors() {
    let cases = [
        (
            r#"{ "ShuffleIndices": "yes", "Layers": [] }"#,
            "'ShuffleIndices' in the network must be true or false",
        ),
        (
            r#"{ "ErrorFunction": "L3", "Layers": [] }"#,
            "cannot be 'L3' (accepted: L1, L2",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": -3 } ] }"#,
            "N of layer 'Input0' must be a whole number above 0",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Hidden", "N": "auto" } ] }"#,
            "\"auto\" is only for input and output layers",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Hidden", "N": 4, "pDropout": 1.5 } ] }"#,
            "must be in [0, 1)",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Hidden", "N": 4, "Activation": "Swish" } ] }"#,
            "cannot be 'Swish'",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "N": 3 } ] }"#,
            "needs a DataSet",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3, "Name": "A" }, { "Kind": "Hidden", "Name": "A", "N": 2 } ] }"#,
            "two layers are named 'A'",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Hidden", "N": 4, "Source": "Nowhere" } ] }"#,
            "refers to 'Nowhere', which is not a layer defined before it",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3, "Name": "I" }, { "Kind": "Hidden", "N": 4, "Name": "H" }, { "Kind": "Hidden", "N": 5, "Skip": "H" } ] }"#,
            "has 5 units but skips from 'H', which has 4",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Convolutional", "Kernel": [3, 3] } ] }"#,
            "layer 'Hidden1' is convolutional and needs N, its number of filters",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Pooling", "Function": "Max", "N": 3 } ] }"#,
            "is a pooling layer: its units follow from its source, so it takes no N",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Pooling", "Kernel": 2 } ] }"#,
            "is a pooling layer and needs a Function (Max, Average or LRN)",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Pooling", "Function": "Cosine" } ] }"#,
            "the pooling function 'Cosine' of layer 'Hidden1' is not supported by Destiny",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Pooling", "Function": "Max", "Activation": "Sigmoid" } ] }"#,
            "is a pooling layer, which has no activation",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Hidden", "N": 4, "Kernel": [3] } ] }"#,
            "'Kernel' in layer 'Hidden1': only convolutional and pooling layers have windows",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Convolutional", "N": 2, "Kernel": [3], "KernelStride": [1, 1] } ] }"#,
            "KernelStride of layer 'Hidden1' has 2 dimensions, its Kernel 1",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Hidden", "Type": "Convolutional", "N": 2, "Kernel": [3, 0] } ] }"#,
            "'Kernel' of layer 'Hidden1' must be a whole number above 0, not 0",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 }, { "Kind": "Output", "DataSet": "b", "N": 2, "BatchNormalization": true } ] }"#,
            "batch normalisation applies to hidden fully connected and convolutional layers",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": [4, 4] }, { "Kind": "Output", "Type": "Convolutional", "DataSet": "b", "N": 2 } ] }"#,
            "Destiny's output layers are fully connected",
        ),
        (
            r#"{ "LocalResponseNormalization": { "k": 2, "m": 5 }, "Layers": [] }"#,
            "'m'",
        ),
        (
            r#"{ "MaxOut": { "k": 2 }, "Layers": [] }"#,
            "maxout is not supported by Destiny",
        ),
        (
            r#"{ "Name": "x", "Name": "y", "Layers": [] }"#,
            "'Name' is given twice",
        ),
        (
            r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3 } "#,
            "test.json:1:",
        ),
        (r#"{ "Name": "no layers" }"#, "the network has no Layers"),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(
            error.contains(expected),
            "{text}\n  gave: {error}\n  expected: {expected}"
        );
    }
}

#[test]
fn neutral_values_of_unsupported_features_still_load() {
    let definition = parse(
        r#"{ "Layers": [
            { "Kind": "Input", "DataSet": "a", "N": 3 },
            { "Kind": "Output", "DataSet": "b", "N": 3, "BatchNormalization": false, "DeltaNorm": 0 } ] }"#,
    )
    .unwrap();
    assert_eq!(definition.layers.len(), 2);
    let error = error_of(r#"{ "DeltaNorm": 2, "Layers": [] }"#);
    assert!(error.contains("DeltaNorm is not supported"), "{error}");
}

#[test]
fn delta_boost_and_the_data_scaled_margins_are_read_as_dsstne_reads_them() {
    let layers = r#""Layers": [
        { "Kind": "Input", "DataSet": "a", "N": 3 },
        { "Kind": "Output", "DataSet": "b", "N": 3, "Activation": "Sigmoid" } ]"#;
    let definition = parse(&format!(
        r#"{{ "DeltaBoost": {{ "one": 30.0 }}, "ErrorFunction": "DataScaledMarginalCrossEntropy",
            "DataScaledMarginalCrossEntropy": {{ "oneScale": 30.0, "zeroTarget": 0.0 }}, {layers} }}"#
    ))
    .unwrap();
    assert_eq!(
        definition.delta_boost,
        DeltaBoost {
            one: 30.0,
            zero: 1.0
        }
    );
    assert_eq!(
        definition.error_function,
        ErrorFunction::DataScaledMarginalCrossEntropy(MarginalParameters {
            one_target: 0.9,
            zero_target: 0.0,
            one_scale: 30.0,
            zero_scale: 1.0,
        })
    );
    assert_eq!(
        parse(&format!("{{ {layers} }}")).unwrap().delta_boost,
        DeltaBoost::default()
    );
    for (text, expected) in [
        (r#"{ "DeltaBoost": { "two": 1 }, "Layers": [] }"#, "'two'"),
        (
            r#"{ "DeltaBoost": { "one": -1 }, "Layers": [] }"#,
            "must not be negative",
        ),
    ] {
        let error = error_of(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn normalize_is_an_extension_of_sparse_input_layers() {
    let definition = parse(
        r#"{ "Layers": [
            { "Kind": "Input", "DataSet": "a", "N": 3, "Sparse": true, "Normalize": true },
            { "Kind": "Output", "DataSet": "b", "N": 3 } ] }"#,
    )
    .unwrap();
    assert!(definition.layers[0].normalize && !definition.layers[1].normalize);
    for text in [
        r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3, "Normalize": true } ] }"#,
        r#"{ "Layers": [ { "Kind": "Input", "DataSet": "a", "N": 3, "Sparse": true },
            { "Kind": "Output", "DataSet": "b", "N": 3, "Normalize": true } ] }"#,
    ] {
        let error = error_of(text);
        assert!(
            error.contains("Normalize applies to sparse input layers only"),
            "{error}"
        );
    }
}
