use super::*;
use std::os::unix::fs::FileTypeExt;

fn entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The process's umask, read without changing it (umask(2) would, for every thread).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn replaces_only_on_success() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("out.txt");
    write_file(&path, |w| w.write_all(b"first")).unwrap();
    let failed = write_file(&path, |w| {
        w.write_all(b"partial")?;
        Err(std::io::Error::other("disk full"))
    });
    assert!(failed.unwrap_err().to_string().contains("disk full"));
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    let failed = write_path(&path, |temporary| {
        std::fs::write(temporary, b"partial").unwrap();
        Err(Error::Data("the writer failed".into()))
    });
    assert!(failed.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert_eq!(
        entries(folder.path()),
        ["out.txt"],
        "no temporary file is left"
    );
    assert!(write_file(&folder.path().join("missing/out.txt"), |w| w
        .write_all(b"x"))
    .is_err());
}

#[test]
fn a_symbolic_link_is_followed_and_stays_a_link() {
    let folder = tempfile::tempdir().unwrap();
    let target = folder.path().join("real.txt");
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink("real.txt", folder.path().join("link1")).unwrap();
    std::os::unix::fs::symlink("link1", folder.path().join("link2")).unwrap();
    let link = folder.path().join("link2");
    write_file(&link, |w| w.write_all(b"new")).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    write_path(&link, |temporary| {
        std::fs::write(temporary, b"newer").map_err(|e| Error::io(temporary, e))
    })
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"newer");
    assert_eq!(entries(folder.path()), ["link1", "link2", "real.txt"]);
    // A link to itself is an error, not a loop.
    let looped = folder.path().join("loop");
    std::os::unix::fs::symlink("loop", &looped).unwrap();
    let error = write_file(&looped, |w| w.write_all(b"x")).unwrap_err();
    assert!(error.to_string().contains("symbolic links"), "{error}");
}

#[test]
fn a_full_device_is_an_error_and_stays_a_device() {
    let full = Path::new("/dev/full");
    let error = write_file(full, |w| w.write_all(&[7u8; 100_000])).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("/dev/full: "), "{message}");
    let Error::Io { error: source, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {message}");
    let error = write_path(full, |temporary| {
        std::fs::write(temporary, b"x").map_err(|e| Error::io(temporary, e))
    })
    .unwrap_err();
    assert!(error.to_string().starts_with("/dev/full: "), "{error}");
    let kind = std::fs::metadata(full).unwrap().file_type();
    assert!(kind.is_char_device(), "/dev/full is still a device");
}

#[test]
fn a_fifo_is_written_in_place() {
    let folder = tempfile::tempdir().unwrap();
    let fifo = folder.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    write_file(&fifo, |w| w.write_all(b"through the pipe")).unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");
    let kind = std::fs::metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo());
    assert_eq!(entries(folder.path()), ["pipe"]);
}

#[test]
fn new_files_follow_the_umask_and_replaced_files_keep_their_mode() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("new.txt");
    write_file(&path, |w| w.write_all(b"x")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask());
    std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
    write_path(&path, |temporary| {
        std::fs::write(temporary, b"y").map_err(|e| Error::io(temporary, e))
    })
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(std::fs::read(&path).unwrap(), b"y");
}

#[test]
fn a_folder_is_not_replaced() {
    let folder = tempfile::tempdir().unwrap();
    let error = write_file(folder.path(), |w| w.write_all(b"x")).unwrap_err();
    assert!(error.to_string().contains("is a directory"), "{error}");
    assert!(folder.path().is_dir());
}
