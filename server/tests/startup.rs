//! A server that cannot start says why and leaves nothing on disk it did not find there. It made
//! its data directory and a new store file before it checked its listen URLs and bound its ports,
//! and a `--data-dir` naming a file got a permissions warning before "Not a directory".

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use folio_server::Config;

/// A config whose data directory is `data` under `dir`, listening on `url`.
fn config(dir: &tempfile::TempDir, url: &str) -> Config {
    Config::for_test(dir.path().join("data"), url)
}

/// Listen URLs the server cannot use are refused before the data directory is made: a scheme
/// that is not http or https, no port, https without a certificate.
#[tokio::test]
async fn a_bad_listen_url_is_refused_before_the_data_directory_is_made() {
    for (url, why) in [
        ("foo://bar", "must start with http:// or https://"),
        ("http://127.0.0.1", "must name a host and a port"),
        ("https://127.0.0.1:0", "no --cert-file and --key-file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let e = folio_server::start(config(&dir, url)).await.err().unwrap();
        assert!(e.contains(why), "{url}: {e}");
        assert!(!dir.path().join("data").exists(), "{url} made the data dir");
    }
}

/// A client port already in use is refused before the data directory is made.
#[tokio::test]
async fn a_port_in_use_is_refused_before_the_data_directory_is_made() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", taken.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let e = folio_server::start(config(&dir, &url)).await.err().unwrap();
    assert!(e.starts_with(&format!("cannot listen on {url}")), "{e}");
    assert!(!dir.path().join("data").exists());
    // The same flags start once the port is free.
    drop(taken);
    let running = folio_server::start(config(&dir, &url)).await.unwrap();
    running.stop().await;
    assert!(dir.path().join("data").join("kv.folio").exists());
}

/// A `--data-dir` naming a file is refused with that reason alone: no warning about the file's
/// permissions first, and the file is left as it was.
#[test]
fn a_data_dir_that_is_a_file_is_refused_with_that_reason_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"mine").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_folio-server"))
        .arg("--data-dir")
        .arg(&file)
        .args(["--listen-client-urls", "http://127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].ends_with(&format!(
            "ERROR cannot start: the data directory {} is not a directory",
            file.display()
        )),
        "{log}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
}
