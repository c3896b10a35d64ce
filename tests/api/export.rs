//! A range in one answer (CSV, NDJSON) and the rate at a moment, on every
//! engine, from the archive and the window joined as history joins them.

use std::time::Duration;

use crate::helpers::{Engine, Options, TestApp, eurusd_rows, eventually, now, spawn_app};

/// An archive holding `seconds` of EURUSD before `end`, the service's first
/// tick (every 5th second missing), returned as `(first second, the points)`.
async fn with_old_points(app: &TestApp, seconds: i64, end: i64) -> (i64, Vec<(i64, f64)>) {
    let archive = app.archive.clone().unwrap();
    archive.prepare(true).await.unwrap();
    let start = end - seconds;
    let old: Vec<(i64, f64)> = (start..end)
        .filter(|t| t % 5 != 0)
        // Rounded to 6 decimals, as every point is.
        .map(|t| (t, (1_000_000 + (t * 7_919) % 10_000 * 10) as f64 / 1e6))
        .collect();
    let rows = eurusd_rows(&old);
    for batch in rows.chunks(10_000) {
        archive.insert(batch).await.unwrap();
    }
    (start, old)
}

async fn an_export_streams_the_whole_range_as_history_has_it(engine: Engine) {
    let started = now();
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    // More than one chunk of the archive (10,000), then the window.
    let (start, old) = with_old_points(&app, 15_000, started).await;
    eventually("live points", Duration::from_secs(15), || async {
        (app.history_points("EURUSD", started, now()).await.len() >= 3).then_some(())
    })
    .await;
    let to = now() - 1;
    let want = app.history_points("EURUSD", start, to).await;
    let differ = want.iter().zip(&old).position(|(w, o)| w != o);
    assert_eq!(
        differ,
        None,
        "history differs from the archived points at {differ:?}: {:?} {:?}",
        differ.map(|i| &want[i.saturating_sub(2)..i + 2]),
        differ.map(|i| &old[i.saturating_sub(2)..i + 2])
    );
    assert!(
        want.len() > old.len(),
        "archive and window: {} {}",
        want.len(),
        old.len()
    );

    let resp = app
        .get(&format!(
            "/api/v1/rates/EURUSD/history?format=csv&from={start}&to={to}"
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,value"));
    let got: Vec<(i64, f64)> = lines
        .map(|l| {
            let (t, v) = l.split_once(',').unwrap();
            (t.parse().unwrap(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(got, want, "CSV");

    let resp = app
        .http
        .get(app.url(&format!(
            "/api/v1/rates/EURUSD/history?from={start}&to={to}"
        )))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let got: Vec<(i64, f64)> = resp
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| {
            let p: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                (p["assetName"].as_str(), p["assetId"].as_u64()),
                (Some("EURUSD"), Some(1))
            );
            (p["time"].as_i64().unwrap(), p["value"].as_f64().unwrap())
        })
        .collect();
    assert_eq!(got, want, "NDJSON");

    // Each refusal names its parameter.
    for (query, parameter) in [
        ("format=csv".to_owned(), "from"),
        (
            format!("format=csv&from={}&to={to}", to - 31 * 86_400),
            "from",
        ),
        (format!("format=csv&from={start}&limit=10"), "limit"),
        (format!("format=xml&from={start}"), "format"),
        (format!("format=csv&from={to}&to={start}"), "from"),
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/rates/EURUSD/history?{query}"))
            .await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}: {body}"
        );
    }
    // `format=json` and a JSON Accept are the paged answer.
    let (status, page) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/history?format=json&from={start}&limit=2"
        ))
        .await;
    assert_eq!(
        (status, page["points"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    app.cleanup().await;
}

async fn the_rate_at_a_moment_is_its_point_or_the_latest_before_it(engine: Engine) {
    let started = now();
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let (start, old) = with_old_points(&app, 600, started).await;
    let value_of = |t: i64| old.iter().find(|p| p.0 == t).map(|p| p.1);
    let at = |t: i64| format!("/api/v1/rates/EURUSD?at={t}");
    // A second with a point (from the archive), and one without (t % 5 == 0):
    // the one before it.
    let with = (start + 100..).find(|t| t % 5 == 1).unwrap();
    let (status, point) = app.get_json(&at(with)).await;
    assert_eq!(status, 200, "{point}");
    assert_eq!(point["time"], with);
    assert_eq!(point["value"].as_f64(), value_of(with));
    assert_eq!(point["assetName"], "EURUSD");
    let without = with + 4;
    let (_, point) = app.get_json(&at(without)).await;
    assert_eq!(point["time"], without - 1, "{point}");
    let resp = app.get(&at(with)).await;
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
    // From the window: a live second.
    let live = eventually("a live point", Duration::from_secs(15), || async {
        let (_, rate) = app.get_json("/api/v1/rates/EURUSD").await;
        rate["time"].as_i64().filter(|&t| t > start + 600)
    })
    .await;
    let (status, point) = app.get_json(&at(live)).await;
    assert_eq!(
        (status, point["time"].as_i64()),
        (200, Some(live)),
        "{point}"
    );
    // Before any point, beyond the staleness limit: 404 with a problem.
    let (status, problem) = app.get_json(&at(start - 100)).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["type"], "/problems/no-point");
    // The future and nonsense: 400 naming `at`.
    for bad in [format!("{}", now() + 3_600), "yesterday".to_owned()] {
        let (status, problem) = app
            .get_json(&format!("/api/v1/rates/EURUSD?at={bad}"))
            .await;
        assert_eq!(
            (status, problem["parameter"].as_str()),
            (400, Some("at")),
            "{problem}"
        );
    }
    app.cleanup().await;
}

/// A gzipped export (schemathesis sends `Accept-Encoding: gzip`) ends as a
/// whole answer: the compression layer polls the body once more after its
/// end, which once panicked the connection mid-answer.
async fn a_gzipped_export_is_whole(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    for path in [
        "/api/v1/rates/EURUSD/history?from=362881&format=csv&to=1068260".to_owned(),
        format!(
            "/api/v1/rates/EURUSD/history?from={}&format=ndjson",
            now() - 5
        ),
    ] {
        // Until the archive exists (it is created as the service starts,
        // and an export that cannot read it is cut short on purpose).
        let text = eventually(
            "a whole gzipped export",
            Duration::from_secs(20),
            || async {
                let resp = app
                    .http
                    .get(app.url(&path))
                    .header("accept-encoding", "gzip")
                    .send()
                    .await
                    .ok()?;
                assert_eq!(resp.status(), 200, "{path}");
                assert_eq!(resp.headers()["content-encoding"], "gzip", "{path}");
                let gz = resp.bytes().await.ok()?;
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(&gz[..]),
                    &mut text,
                )
                .ok()?;
                Some(text)
            },
        )
        .await;
        assert!(
            path.contains("ndjson") || text == "time,value\n",
            "{path}: {text:?}"
        );
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    a_gzipped_export_is_whole,
    an_export_streams_the_whole_range_as_history_has_it,
    the_rate_at_a_moment_is_its_point_or_the_latest_before_it,
);
