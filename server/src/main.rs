//! `folio-server`: an etcd v3-compatible gRPC server on a folio store. Flags as etcd's
//! (`folio-server --help`); stops cleanly on SIGTERM or SIGINT.

use clap::Parser;
use folio_server::Config;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let running = match folio_server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            folio_server::error!("cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        folio_server::error!("cannot install the signal handlers");
        return std::process::ExitCode::FAILURE;
    };
    tokio::select! {
        _ = term.recv() => folio_server::info!("SIGTERM received"),
        _ = int.recv() => folio_server::info!("SIGINT received"),
    }
    running.stop().await;
    std::process::ExitCode::SUCCESS
}
