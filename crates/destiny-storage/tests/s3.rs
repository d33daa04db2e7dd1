//! Transfers through a real S3-compatible server on the loopback address: moto's server,
//! started once for these tests. Without it they are skipped, unless DESTINY_REQUIRE_S3 is
//! set (as the test script sets it).

use destiny_storage::{exists, Input, Output};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Server {
    _process: Child,
}

/// The server's endpoint, or `None` if moto's server cannot be started here.
fn server() -> Option<&'static str> {
    static SERVER: OnceLock<Option<(Server, String)>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let process = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(process) = process else {
                return unavailable("python3 could not be started");
            };
            let server = Server { _process: process };
            let endpoint = format!("http://127.0.0.1:{port}");
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if started.elapsed() > Duration::from_secs(30) {
                    return unavailable("moto's server did not start (pip install 'moto[server]')");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Every test reads these, and none runs before they are set here.
            std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
            let made = Command::new("python3")
                .args(["-c", &format!("import boto3; boto3.client('s3', endpoint_url='{endpoint}').create_bucket(Bucket='destiny')")])
                .status()
                .unwrap();
            assert!(made.success(), "creating the test bucket");
            Some((server, endpoint))
        })
        .as_ref()
        .map(|(_, endpoint)| endpoint.as_str())
}

fn unavailable(why: &str) -> Option<(Server, String)> {
    assert!(std::env::var_os("DESTINY_REQUIRE_S3").is_none(), "{why}");
    eprintln!("skipping the S3 tests: {why}");
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self._process.kill();
    }
}

fn bytes(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn round_trip(name: &str, content: &[u8]) {
    let url = format!("s3://destiny/tests/{name}");
    let output = Output::file(Path::new(&url)).unwrap();
    assert!(output.path().ends_with(name), "the stand-in keeps the name");
    std::fs::write(output.path(), content).unwrap();
    assert!(
        !exists(Path::new(&url)).unwrap(),
        "nothing is visible before publish"
    );
    output.publish().unwrap();
    assert!(exists(Path::new(&url)).unwrap());
    let input = Input::open(Path::new(&url)).unwrap();
    assert_eq!(std::fs::read(input.path()).unwrap(), content);
}

#[test]
fn a_small_file_goes_up_and_comes_back() {
    if server().is_none() {
        return;
    }
    round_trip("small.bin", &bytes(1000, 1));
    round_trip("empty.bin", &[]);
}

#[test]
fn a_large_file_goes_up_in_parts_and_comes_back() {
    if server().is_none() {
        return;
    }
    round_trip("large.bin", &bytes((40 << 20) + 123, 2));
}

#[test]
fn a_folder_becomes_objects_under_its_prefix() {
    if server().is_none() {
        return;
    }
    let output = Output::folder(Path::new("s3://destiny/tests/dataset")).unwrap();
    std::fs::write(output.path().join("train.arrow"), b"train").unwrap();
    std::fs::create_dir(output.path().join("index")).unwrap();
    std::fs::write(output.path().join("index/items.txt"), b"items").unwrap();
    std::fs::write(output.path().join(".train.arrow.tmp"), b"left out").unwrap();
    output.publish().unwrap();
    for (key, content) in [("train.arrow", "train"), ("index/items.txt", "items")] {
        let input = Input::open(Path::new(&format!("s3://destiny/tests/dataset/{key}"))).unwrap();
        assert_eq!(std::fs::read_to_string(input.path()).unwrap(), content);
    }
    assert!(!exists(Path::new("s3://destiny/tests/dataset/.train.arrow.tmp")).unwrap());
}

#[test]
fn replacing_starts_from_the_object() {
    if server().is_none() {
        return;
    }
    let url = Path::new("s3://destiny/tests/model.safetensors");
    let first = Output::replacing(url).unwrap();
    assert!(!first.path().exists(), "no object yet, no copy");
    std::fs::write(first.path(), b"epoch 1").unwrap();
    first.publish().unwrap();
    let second = Output::replacing(url).unwrap();
    assert_eq!(std::fs::read(second.path()).unwrap(), b"epoch 1");
}

#[test]
fn missing_objects_and_buckets_are_errors_naming_them() {
    if server().is_none() {
        return;
    }
    let error = Input::open(Path::new("s3://destiny/tests/absent.arrow"))
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "s3://destiny/tests/absent.arrow: no such object"
    );
    let error = Input::open(Path::new("s3://no-such-bucket/x"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.starts_with("s3://no-such-bucket/x: "), "{error}");
    let output = Output::file(Path::new("s3://no-such-bucket/x")).unwrap();
    std::fs::write(output.path(), b"x").unwrap();
    let error = output.publish().unwrap_err().to_string();
    assert!(error.starts_with("s3://no-such-bucket/x: "), "{error}");
}
