//! REST v1 against the real service, Redis and PostgreSQL.

use std::time::Duration;

use crate::helpers::{Engine, Options, assert_consecutive, eventually, spawn_app, times};

async fn a_fresh_service_answers_a_simulated_quote_within_3_seconds(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let quote = eventually("a EURUSD quote", Duration::from_secs(3), || async {
        let (status, body) = app.get_json("/api/v1/rates/EURUSD").await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(quote["symbol"], "EURUSD");
    assert_eq!(quote["assetId"], 1);
    assert_eq!(quote["source"], "simulated");
    assert_eq!(quote["stale"], false);
    let (bid, ask, value) = (
        quote["bid"].as_f64().unwrap(),
        quote["ask"].as_f64().unwrap(),
        quote["value"].as_f64().unwrap(),
    );
    assert!(bid <= value && value <= ask, "{quote}");
    assert!((value - 1.08).abs() < 0.05, "realistic EURUSD: {value}");
    app.cleanup().await;
}

async fn catalog_rates_and_symbol_spellings(engine: Engine) {
    let Some(app) = spawn_app(Options {
        extra: vec!["--extra-assets".into(), "6:BTCUSDT".into()],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let (status, assets) = app.get_json("/api/v1/assets").await;
    assert_eq!(status, 200);
    assert_eq!(
        assets,
        serde_json::json!({"assets": [
            {"id": 1, "name": "EURUSD"}, {"id": 2, "name": "USDJPY"}, {"id": 3, "name": "GBPUSD"},
            {"id": 4, "name": "AUDUSD"}, {"id": 5, "name": "USDCAD"}, {"id": 6, "name": "BTCUSDT"}
        ]})
    );
    let rates = eventually("all six rates", Duration::from_secs(5), || async {
        let (_, body) = app.get_json("/api/v1/rates").await;
        (body["rates"].as_array().map(Vec::len) == Some(6)).then_some(body)
    })
    .await;
    let ids: Vec<_> = rates["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["assetId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    for spelling in [
        "EURUSD",
        "eurusd",
        "EUR-USD",
        "EUR_USD",
        "EUR%2FUSD",
        "eur%2fusd",
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/rates/{spelling}")).await;
        assert_eq!(status, 200, "{spelling}");
        assert_eq!(body["symbol"], "EURUSD", "{spelling}");
    }
    app.cleanup().await;
}

async fn unknown_symbols_are_404_problems(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    for path in [
        "/api/v1/rates/XXXYYY",
        "/api/v1/rates/EURUSDX/history",
        "/api/v1/rates/BTCUSDT",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], 404);
        assert_eq!(body["type"], "/problems/unknown-symbol");
        assert!(
            body["detail"].as_str().unwrap().contains("unknown symbol"),
            "{body}"
        );
    }
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
    app.cleanup().await;
}

async fn every_bad_parameter_is_a_400_naming_it(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let forged = "djE6MTAwOjUwOjIwMDowMDAwMDAwMA"; // "v1:100:50:200:00000000"
    let cases = [
        ("from=abc", "from"),
        ("to=12x", "to"),
        ("from=-5", "from"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("from=200&to=100", "from"),
        (&format!("cursor={forged}"), "cursor"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=1&limit=2", "limit"),
    ];
    for (query, parameter) in cases {
        let resp = app
            .get(&format!("/api/v1/rates/EURUSD/history?{query}"))
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["title"], "Invalid parameter");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    let (status, body) = app.get_json("/api/v1/rates/EUR$USD").await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("symbol")));
    app.cleanup().await;
}

async fn cursor_from_another_range_is_refused(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 30,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let cursor = eventually(
        "a page with a next cursor",
        Duration::from_secs(5),
        || async {
            let (_, page) = app.get_json("/api/v1/rates/EURUSD/history?limit=5").await;
            page["next_cursor"].as_str().map(str::to_owned)
        },
    )
    .await;
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/history?from=1&cursor={cursor}"
        ))
        .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("cursor")));
    // A cursor is good for the asset it was issued for only.
    let (status, body) = app
        .get_json(&format!("/api/v1/rates/USDJPY/history?cursor={cursor}"))
        .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("cursor")));
    // The forged extreme of the old unkeyed format is refused too.
    let forged =
        "djE6LTkyMjMzNzIwMzY4NTQ3NzU4MDg6LTkyMjMzNzIwMzY4NTQ3NzU4MDg6OTIyMzM3MjAzNjg1NDc3NTgwNw";
    let (status, body) = app
        .get_json(&format!("/api/v1/rates/EURUSD/history?cursor={forged}"))
        .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("cursor")));
    app.cleanup().await;
}

async fn history_defaults_to_the_live_window_with_link_header(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 300,
        history_seconds: 300,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let resp = eventually("a full first page", Duration::from_secs(5), || async {
        let resp = app.get("/api/v1/rates/USDJPY/history").await;
        (resp.status() == 200 && resp.headers().contains_key("link")).then_some(resp)
    })
    .await;
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    let page: serde_json::Value = resp.json().await.unwrap();
    let t = times(&page["points"]);
    assert_eq!(t.len(), 100, "default limit");
    assert_consecutive(&t);
    let cursor = page["next_cursor"].as_str().unwrap();
    assert!(
        link.starts_with("</api/v1/rates/USDJPY/history?from="),
        "{link}"
    );
    assert!(
        link.ends_with(&format!("cursor={cursor}>; rel=\"next\"")),
        "{link}"
    );
    // Following the link continues exactly where the page ended.
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let (status, page2) = app.get_json(next).await;
    assert_eq!(status, 200);
    let t2 = times(&page2["points"]);
    assert_eq!(t2[0], t[99] + 1);
    assert_eq!(page2["points"][0]["assetName"], "USDJPY");
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    a_fresh_service_answers_a_simulated_quote_within_3_seconds,
    catalog_rates_and_symbol_spellings,
    unknown_symbols_are_404_problems,
    every_bad_parameter_is_a_400_naming_it,
    cursor_from_another_range_is_refused,
    history_defaults_to_the_live_window_with_link_header,
);
