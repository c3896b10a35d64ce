//! The settings and the command line as an operator meets them.

use clap::Parser;

use super::*;
use crate::sources::SourceSpec;

#[test]
fn defaults_follow_the_operator_contract() {
    // Only the defaults of variables a test environment is unlikely to set.
    let c = Config::from_args(["ratesd"]).unwrap();
    if std::env::var_os("RATES_HISTORY_SECONDS").is_none() {
        assert_eq!(c.history_seconds, 1800);
    }
    if std::env::var_os("RATES_STALE_AFTER_SECONDS").is_none() {
        assert_eq!(c.stale_after_seconds, 10);
    }
    if std::env::var_os("RATES_SOURCES").is_none() {
        assert_eq!(c.sources, [SourceSpec::Simulated]);
    }
    if std::env::var_os("RATES_ARCHIVE_RETENTION_DAYS").is_none() {
        assert_eq!(c.archive_retention_days, 0, "keep everything");
    }
    // A bare machine: the embedded engine and no archive.
    if std::env::var_os("RATES_REDIS_URL").is_none() {
        assert_eq!(c.redis_url(), None);
    }
    if std::env::var_os("RATES_DATABASE_URL").is_none() {
        assert_eq!(c.archive_url(), None);
    }
}

#[test]
fn flags_parse_lists_booleans_and_off() {
    let c = Config::from_args([
        "ratesd",
        "--sources",
        "fxcm,binance,file:/tmp/f.txt",
        "--auto-migrate",
        "false",
        "--database-url",
        "off",
    ])
    .unwrap();
    assert_eq!(
        c.sources,
        [
            SourceSpec::Fxcm,
            SourceSpec::Binance,
            SourceSpec::File("/tmp/f.txt".into())
        ]
    );
    assert!(!c.auto_migrate);
    assert_eq!(c.archive_url(), None);
}

#[test]
fn bad_values_are_refused_with_the_setting_named() {
    let err = Config::from_args(["ratesd", "--sources", "reuters"]).unwrap_err();
    assert!(err.to_string().contains("reuters"), "{err}");
    let err = Config::from_args(["ratesd", "--history-seconds", "0"]).unwrap_err();
    assert!(err.to_string().contains("history-seconds"), "{err}");
}

#[test]
fn proxy_lists_may_be_empty() {
    assert_eq!("".parse::<IpList>(), Ok(IpList(vec![])));
    assert_eq!(" 10.0.0.1, ::1 ,".parse::<IpList>().unwrap().0.len(), 2);
    assert!(
        "10.0.0.x"
            .parse::<IpList>()
            .unwrap_err()
            .contains("10.0.0.x")
    );
}

#[test]
fn subcommands_parse() {
    let cli = Cli::try_parse_from(["ratesd", "worker", "--log", "debug"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Worker)));
    assert_eq!(cli.config.log, "debug");
    let help = Cli::try_parse_from(["ratesd", "--help"])
        .unwrap_err()
        .to_string();
    for var in [
        "RATES_HTTP_ADDR",
        "RATES_SOURCES",
        "RATES_DATABASE_URL",
        "RATES_ARCHIVE_RETENTION_DAYS",
        "RATES_LOG",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
}

#[test]
fn the_client_shows_its_own_options_only() {
    let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    let parsed = ClientCli::from_argv(&argv(&["ratesd", "client", "--asset", "USDJPY"]))
        .unwrap()
        .unwrap();
    assert_eq!(parsed.args.asset, "USDJPY");
    assert!(ClientCli::from_argv(&argv(&["ratesd", "serve"])).is_none());
    let help = ClientCli::from_argv(&argv(&["ratesd", "client", "--help"]))
        .unwrap()
        .unwrap_err()
        .to_string();
    for flag in ["--asset", "--url", "--v2", "--stream", "--history", "--key"] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
    assert!(
        !help.contains("--redis-url") && !help.contains("RATES_"),
        "{help}"
    );
}

#[test]
fn the_client_takes_v2_streams_only_with_v2() {
    let client = |a: &[&str]| {
        let argv: Vec<_> = ["ratesd", "client"]
            .iter()
            .chain(a)
            .map(std::ffi::OsString::from)
            .collect();
        ClientCli::from_argv(&argv).unwrap().map(|c| c.args)
    };
    let args = client(&[
        "--v2",
        "--stream",
        "EURUSD@point",
        "--stream",
        "USDJPY@kline_1m",
        "--history",
        "600",
    ])
    .unwrap();
    assert!(args.v2);
    assert_eq!(args.streams, ["EURUSD@point", "USDJPY@kline_1m"]);
    assert_eq!(args.history, Some(600));
    let v1 = client(&[]).unwrap();
    assert!(!v1.v2 && v1.streams.is_empty() && v1.history.is_none());
    // A stream or a history means nothing to v1, and a stream names its
    // own asset.
    for refused in [
        &["--stream", "EURUSD@point"][..],
        &["--history", "60"],
        &["--v2", "--asset", "USDJPY", "--stream", "EURUSD@point"],
    ] {
        assert!(client(refused).is_err(), "{refused:?} was accepted");
    }
}
