//! A server that cannot start says why and leaves nothing on disk it did not find there. It made
//! its data directory and a new store file before it checked its listen URLs and bound its ports.

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
