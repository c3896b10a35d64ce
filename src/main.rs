//! The `ratesd` binary: configuration, logging, and the roles until a signal.

use anyhow::Context;
use clap::Parser;
use ratesd::app::{self, App};
use ratesd::config::{Cli, ClientCli, Command, KeysCommand, Role};

/// jemalloc rather than the C library's allocator: a request and its
/// answer make small allocations (17 for a cached rate when this was
/// measured, 6 since the front door's shortcut), and with jemalloc a cached
/// answer took ~6% less CPU, at the same memory a connection
/// (`loadtest/RESULTS.md`, issue 27; mimalloc was as fast but held ~20%
/// more a connection).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        Some(Command::Keys {
            command: KeysCommand::New { tier, name },
        }) => return new_key(&cli.config, &tier, &name),
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

/// `ratesd keys new`: a new key on standard output (shown once), and the
/// keys file's line for it.
fn new_key(config: &ratesd::config::Config, tier: &str, name: &str) -> anyhow::Result<()> {
    use ratesd::access::keys;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    anyhow::ensure!(
        name_ok,
        "--name: one word of letters, digits, '-', '_', '.', '@' (at most 64)"
    );
    let tiers = ratesd::access::Gate::tiers_of(config).context("RATES_TIERS")?;
    anyhow::ensure!(
        tiers.get(tier).is_some(),
        "--tier: RATES_TIERS has no tier '{tier}' (it has: {})",
        tiers
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let key = keys::new_key()?;
    println!("key (shown once; give it to {name}):\n  {key}");
    println!(
        "line for the keys file (RATES_KEYS_FILE):\n  {}",
        keys::file_line(&key, tier, name)
    );
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
