//! A subscribe named in a URL: `/api/v2/ws?streams=EURUSD@point,USDJPY@kline_1m`
//! (Binance's combined-stream URL) and `/api/v2/events?streams=...`, with
//! optional `history`, `since` and `epoch`; for an event stream, the
//! resume point of `Last-Event-ID` (`<second>@<epoch>`). Read by the same
//! rules as a subscribe frame's params.

use serde_json::{Map, Value};

use super::request::{Subscribe, epoch, history, since, streams, truncate};
use crate::domain::UnixSeconds;

/// A URL's subscribe; `None` when it names no streams. The error names the
/// query parameter at fault.
pub fn url_subscribe(
    streams_raw: Option<&str>,
    history_raw: Option<&str>,
    since_raw: Option<&str>,
    epoch_raw: Option<&str>,
) -> Result<Option<Subscribe>, (&'static str, String)> {
    let Some(list) = streams_raw else {
        if let Some(name) = [
            ("history", history_raw),
            ("since", since_raw),
            ("epoch", epoch_raw),
        ]
        .into_iter()
        .find_map(|(name, raw)| raw.map(|_| name))
        {
            return Err((name, format!("{name} needs streams in the URL too")));
        }
        return Ok(None);
    };
    let number = |raw: &str| {
        raw.trim()
            .parse::<i64>()
            .map_or_else(|_| Value::String(raw.to_owned()), Value::from)
    };
    let mut params = Map::new();
    params.insert(
        "streams".into(),
        Value::Array(
            list.split([',', '/'])
                .filter(|s| !s.trim().is_empty())
                .map(|s| Value::String(s.trim().to_owned()))
                .collect(),
        ),
    );
    if let Some(raw) = history_raw {
        params.insert("history".into(), number(raw));
    }
    if let Some(raw) = since_raw {
        params.insert("since".into(), number(raw));
    }
    if let Some(raw) = epoch_raw {
        params.insert("epoch".into(), Value::String(raw.to_owned()));
    }
    // The messages are a subscribe frame's; the URL says no `params.`.
    let named = |name: &'static str| move |e: String| (name, e.replace("params.", ""));
    Ok(Some(Subscribe {
        streams: streams(&params).map_err(named("streams"))?,
        history: history(&params).map_err(named("history"))?,
        since: since(&params).map_err(named("since"))?,
        epoch: epoch(&params).map_err(named("epoch"))?,
    }))
}

/// The resume point an event stream's `Last-Event-ID` names:
/// `<second>@<epoch>`, as its events' ids are written.
pub fn last_event_id(raw: &str) -> Result<(UnixSeconds, String), String> {
    let bad = || {
        format!(
            "Last-Event-ID must be <second>@<epoch>, as the events' ids are, got '{}'",
            truncate(raw, 40)
        )
    };
    let (second, epoch) = raw.trim().split_once('@').ok_or_else(bad)?;
    let second: UnixSeconds = second.parse().ok().filter(|s| *s >= 0).ok_or_else(bad)?;
    if epoch.is_empty() || epoch.chars().count() > 64 {
        return Err(bad());
    }
    Ok((second, epoch.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_streams_and_resume_as_a_subscribe_does() {
        let s = url_subscribe(
            Some("EURUSD@point,usdjpy@kline_1m/GBPUSD@ticker"),
            Some("600"),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.streams,
            ["EURUSD@point", "usdjpy@kline_1m", "GBPUSD@ticker"]
        );
        assert_eq!((s.history, s.since, s.epoch), (600, None, None));
        let s = url_subscribe(Some("!all@point"), None, Some("1455883485"), Some("17"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.since, s.epoch.as_deref()),
            (Some(1_455_883_485), Some("17"))
        );
        assert_eq!(url_subscribe(None, None, None, None).unwrap(), None);
    }

    #[test]
    fn a_bad_url_names_the_parameter() {
        for (args, parameter) in [
            ((Some(""), None, None, None), "streams"),
            ((Some(",,"), None, None, None), "streams"),
            ((Some("EURUSD@point"), Some("1801"), None, None), "history"),
            ((Some("EURUSD@point"), Some("x"), None, None), "history"),
            ((Some("EURUSD@point"), None, Some("-5"), None), "since"),
            ((None, Some("60"), None, None), "history"),
        ] {
            let (streams, history, since, epoch) = args;
            let (name, message) = url_subscribe(streams, history, since, epoch).unwrap_err();
            assert_eq!(name, parameter, "{args:?}: {message}");
            assert!(!message.contains("params."), "{message}");
        }
    }

    #[test]
    fn last_event_ids_are_second_at_epoch() {
        assert_eq!(
            last_event_id("1455883485@1733390000000000").unwrap(),
            (1_455_883_485, "1733390000000000".to_owned())
        );
        for bad in ["", "1455883485", "x@1", "-1@1", "5@"] {
            assert!(last_event_id(bad).is_err(), "{bad}");
        }
    }
}
