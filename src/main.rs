//! The `ratesd` binary: configuration, logging, and the roles until a signal.

use anyhow::Context;
use clap::Parser;
use ratesd::app::{self, App};
use ratesd::config::{Cli, ClientCli, Command, Role};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("ratesd: ignoring .env: {e}");
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(client) = ClientCli::from_argv(&argv) {
        let client = client.unwrap_or_else(|e| e.exit());
        ratesd::telemetry::init("warn", ratesd::config::LogFormat::Text);
        return run_client(&client.args).await;
    }
    let cli = Cli::parse_from(argv);
    ratesd::telemetry::init(&cli.config.log, cli.config.log_format);
    let role = match cli.command {
        Some(Command::Migrate) => {
            app::migrate(&cli.config)
                .await
                .context("applying migrations")?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        // `ratesd --flag client ...`: the client, after server flags.
        Some(Command::Client(args)) => return run_client(&args).await,
        Some(Command::Serve) => Role::Serve,
        Some(Command::Worker) => Role::Worker,
        None => Role::All,
    };
    let app = App::start(&cli.config, role)
        .await
        .context("starting ratesd")?;
    app.run_until(shutdown_signal()).await;
    Ok(())
}

/// `ratesd client`: prints until its points are done or Ctrl-C.
async fn run_client(args: &ratesd::config::ClientArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    tokio::select! {
        result = ratesd::client::run(args, &mut out) => result.context("client")?,
        () = shutdown_signal() => {}
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
