//! Who may call (`RATES_AUTH`): keys, tokens, tiers, at the front door of
//! the real service, on every engine.

use std::time::Duration;

use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{
    Engine, KeysFile, Options, TestApp, close_frame, eventually, next_frame, now, spawn_app,
    unique_id, until_action,
};

const SECRET: &str = "a-test-secret-of-more-than-32-bytes-0123456789";

fn token(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn options(engine: Engine, mode: &str, keys: &KeysFile, more: &[&str]) -> Options {
    let path = keys.path();
    let mut flags = vec![
        "--auth",
        mode,
        "--keys-file",
        &path,
        "--jwt-key",
        SECRET,
        "--tiers",
        "free:100/200/16/64,pro:1000/2000/2/3",
    ];
    flags.extend(more);
    Options::flags(engine, &flags)
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

fn ws_url(app: &TestApp, path: &str) -> String {
    app.url(path).replacen("http", "ws", 1)
}

/// A WebSocket upgrade to `path` with `headers`: the socket, or the
/// refusal's status.
async fn ws_with(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let mut request = ws_url(app, path).into_client_request().unwrap();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

async fn problem(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    resp.json().await.unwrap()
}

async fn each_credential_form_is_accepted_and_each_bad_one_refused(engine: Engine) {
    let key = ratesd::access::keys::new_key().unwrap();
    let keys = KeysFile::new(&[(&key, "pro", "acme")]);
    let Some(app) = spawn_app(options(engine, "required", &keys, &[])).await else {
        return;
    };
    let bearer = format!("Bearer {key}");

    // No credential: 401 with the challenge and the problem.
    let resp = app.get("/api/v1/rates").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"ratesd\""
    );
    let body = problem(resp).await;
    assert_eq!(body["type"], "/problems/unauthorized");

    // A key in either header, a token as a bearer.
    for headers in [
        [("authorization", bearer.as_str())],
        [("x-api-key", key.as_str())],
    ] {
        let resp = get_with(&app, "/api/v1/assets", &headers).await;
        assert_eq!(resp.status(), StatusCode::OK, "{:?}", headers[0].0);
        assert_eq!(resp.headers()["ratelimit-policy"], "2000;w=2;tier=\"pro\"");
    }
    let good = token(json!({"sub": "browser-1", "exp": now() + 300, "tier": "free"}));
    let resp = get_with(
        &app,
        "/api/v1/assets",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["ratelimit-policy"], "200;w=2;tier=\"free\"");

    // Bad ones: each a 401 naming why, never the credential.
    let expired = token(json!({"sub": "browser-1", "exp": now() - 60}));
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "x", "exp": now() + 300}),
        &EncodingKey::from_secret(b"some-other-secret-of-32-bytes-or-more").unwrap(),
    )
    .unwrap();
    let none = {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"sub": "x", "exp": now() + 300}))
        )
    };
    let unknown_key = ratesd::access::keys::new_key().unwrap();
    for (what, credential, says) in [
        ("unknown key", unknown_key.as_str(), "unknown or revoked"),
        ("expired token", expired.as_str(), "expired"),
        ("bad signature", other_secret.as_str(), "signature"),
        ("alg none", none.as_str(), ""),
        ("garbage", "garbage", ""),
    ] {
        let resp = get_with(
            &app,
            "/api/v1/rates",
            &[("authorization", &format!("Bearer {credential}"))],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"ratesd\", error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let text = resp.text().await.unwrap();
        assert!(text.contains(says), "{what}: {text}");
        assert!(
            !text.contains(credential) && !challenge.contains(credential),
            "{what} echoed"
        );
    }

    // `?token=` opens WebSockets and event streams, not REST routes.
    let resp = app.get(&format!("/api/v1/rates?token={key}")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ws_with(&app, "/api/v1/ws", &[]).await.err(), Some(401));
    assert_eq!(ws_with(&app, "/", &[]).await.err(), Some(401));
    let mut ws = ws_with(&app, &format!("/api/v1/ws?token={key}"), &[])
        .await
        .expect("v1 with ?token=");
    ws.send(Message::text(
        json!({"action": "assets", "message": {}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(until_action(&mut ws, "assets").await["action"], "assets");
    let ws2 = ws_with(&app, "/api/v2/ws", &[("authorization", &bearer)]).await;
    assert!(ws2.is_ok(), "v2 with a bearer header");
    let events = app
        .get(&format!("/api/v2/events?streams=EURUSD@point&token={good}"))
        .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/v2/events?streams=EURUSD@point")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // An upgrade however its headers list it is an upgrade to the gate.
    let sneaky = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "foo, websocket"),
    ];
    assert_eq!(ws_with(&app, "/", &sneaky).await.err(), Some(401));

    // A keyed answer is the caller's own: no shared cache keeps it (also
    // the rate the front door answers itself: the first request of a second
    // goes to the route, which builds the snapshot, the next ones not).
    for path in [
        "/api/v1/assets",
        "/api/v1/rates/EURUSD",
        "/api/v1/rates/EURUSD",
    ] {
        let resp = eventually(path, Duration::from_secs(15), || async {
            let resp = get_with(&app, path, &[("x-api-key", &key)]).await;
            (resp.status() == StatusCode::OK).then_some(resp)
        })
        .await;
        let cache = resp.headers()["cache-control"].to_str().unwrap();
        assert!(cache.starts_with("private, max-age="), "{path}: {cache}");
        let vary: Vec<_> = resp
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            vary.iter().any(|v| v.contains("Authorization")),
            "{path}: {vary:?}"
        );
    }
    // A browser on another origin may send a key or token.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/rates"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization, x-api-key")
        .send()
        .await
        .unwrap();
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-api-key"),
        "{allowed}"
    );

    // What stays open: the page, the docs, the problems, the probes.
    for open in [
        "/",
        "/docs/",
        "/api-docs/openapi.json",
        "/problems/unauthorized",
        "/health/live",
    ] {
        assert_eq!(app.get(open).await.status(), StatusCode::OK, "{open}");
    }
    app.cleanup().await;
}

async fn a_tokens_symbols_forbid_other_assets_on_rest_v1_and_v2(engine: Engine) {
    let keys = KeysFile::new(&[]);
    let Some(app) = spawn_app(options(engine, "required", &keys, &[])).await else {
        return;
    };
    let t = token(json!({"sub": "eur-only", "exp": now() + 300, "symbols": ["EURUSD"]}));
    let auth = format!("Bearer {t}");
    let h = [("authorization", auth.as_str())];
    let rate = eventually("EURUSD's rate", Duration::from_secs(15), || async {
        let resp = get_with(&app, "/api/v1/rates/EURUSD", &h).await;
        (resp.status() == StatusCode::OK).then_some(())
    })
    .await;
    let () = rate;
    for path in [
        "/api/v1/rates/USDJPY",
        "/api/v1/rates/USDJPY/history",
        "/api/v1/rates/USDJPY/candles?interval=1m",
        "/api/v1/rates/USDJPY/ticker",
        "/api/v1/rates?symbols=EURUSD,USDJPY",
        "/api/v1/convert?from=USD&to=JPY",
    ] {
        let resp = get_with(&app, path, &h).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(problem(resp).await["type"], "/problems/forbidden", "{path}");
    }
    // The lists show what the token may read.
    let list: serde_json::Value = get_with(&app, "/api/v1/rates", &h)
        .await
        .json()
        .await
        .unwrap();
    let symbols: Vec<&str> = list["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["EURUSD"]);

    // v1: USDJPY (asset 4? by the catalog) refused, EURUSD served.
    let assets: serde_json::Value = get_with(&app, "/api/v1/assets", &h)
        .await
        .json()
        .await
        .unwrap();
    let id_of = |name: &str| {
        assets["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let mut v1 = ws_with(&app, &format!("/api/v1/ws?token={t}"), &[])
        .await
        .unwrap();
    v1.send(Message::text(
        json!({"action": "subscribe", "message": {"assetId": id_of("USDJPY")}}).to_string(),
    ))
    .await
    .unwrap();
    let refused = next_frame(&mut v1).await;
    assert_eq!(refused["message"]["error_type"], "Forbidden", "{refused}");
    v1.send(Message::text(
        json!({"action": "subscribe", "message": {"assetId": id_of("EURUSD")}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        until_action(&mut v1, "asset_history").await["action"],
        "asset_history"
    );

    // v2: a stream of another asset, and the whole market, refused.
    let mut v2 = ws_with(&app, &format!("/api/v2/ws?token={t}"), &[])
        .await
        .unwrap();
    for (id, stream) in [
        (1, "USDJPY@point"),
        (2, "!all@point"),
        (3, "USDJPY@kline_1m"),
    ] {
        v2.send(Message::text(
            json!({"id": id, "method": "subscribe", "params": {"streams": [stream]}}).to_string(),
        ))
        .await
        .unwrap();
        let answer = next_frame(&mut v2).await;
        assert_eq!(answer["id"], id);
        assert_eq!(answer["error"]["code"], "Forbidden", "{stream}: {answer}");
    }
    v2.send(Message::text(
        json!({"id": 4, "method": "subscribe", "params": {"streams": ["EURUSD@point"]}})
            .to_string(),
    ))
    .await
    .unwrap();
    let answer = next_frame(&mut v2).await;
    assert_eq!(
        answer["result"]["streams"],
        json!(["EURUSD@point"]),
        "{answer}"
    );
    // Named in the URL: the upgrade is refused with a 403.
    assert_eq!(
        ws_with(
            &app,
            &format!("/api/v2/ws?streams=USDJPY@point&token={t}"),
            &[]
        )
        .await
        .err(),
        Some(403)
    );
    let events = app
        .get(&format!("/api/v2/events?streams=USDJPY@point&token={t}"))
        .await;
    assert_eq!(events.status(), StatusCode::FORBIDDEN);
    app.cleanup().await;
}

async fn a_websocket_is_closed_with_4001_when_its_token_expires(engine: Engine) {
    let keys = KeysFile::new(&[]);
    let Some(app) = spawn_app(options(engine, "required", &keys, &[])).await else {
        return;
    };
    let exp = now() + 3;
    let t = token(json!({"sub": "short", "exp": exp}));
    let mut ws = ws_with(
        &app,
        &format!("/api/v2/ws?streams=EURUSD@point&token={t}"),
        &[],
    )
    .await
    .unwrap();
    let close = close_frame(&mut ws, Duration::from_secs(20)).await;
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "token expired");
    let at = now();
    assert!(at >= exp && at <= exp + 5, "closed at {at}, exp {exp}");

    // An event stream's last event says so, and it ends.
    let t = token(json!({"sub": "short", "exp": now() + 3}));
    let body = tokio::time::timeout(
        Duration::from_secs(20),
        app.get(&format!("/api/v2/events?streams=EURUSD@point&token={t}"))
            .await
            .text(),
    )
    .await
    .expect("the event stream ends")
    .unwrap();
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.contains("event: error")
            && last.contains("\"Unauthorized\"")
            && last.contains("token expired"),
        "{last}"
    );
    // Past its few seconds of leeway, the expired token is refused.
    let path = format!("/api/v2/ws?token={t}");
    eventually(
        "the expired token refused",
        Duration::from_secs(10),
        || async { (ws_with(&app, &path, &[]).await.err() == Some(401)).then_some(()) },
    )
    .await;
    app.cleanup().await;
}

async fn tiers_give_each_their_own_limit_and_connection_cap(engine: Engine) {
    let key = ratesd::access::keys::new_key().unwrap();
    let keys = KeysFile::new(&[(&key, "pro", "acme")]);
    let Some(app) = spawn_app(options(
        engine,
        "optional",
        &keys,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    ))
    .await
    else {
        return;
    };
    let h = [("x-api-key", key.as_str())];
    // Anonymous: three, then 429 with its tier's headers.
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/assets").await.status(), StatusCode::OK);
    }
    let refused = app.get("/api/v1/assets").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "3;w=3;tier=\"anonymous\""
    );
    // The key, from the same address, is counted on its own.
    for _ in 0..20 {
        let resp = get_with(&app, "/api/v1/assets", &h).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["ratelimit-limit"], "2000");
    }
    // pro: two connections, three streams each.
    let mut a = ws_with(&app, "/api/v2/ws", &h).await.expect("first");
    let _b = ws_with(&app, "/api/v2/ws", &h).await.expect("second");
    assert_eq!(ws_with(&app, "/api/v2/ws", &h).await.err(), Some(429));
    let streams = [
        "EURUSD@point",
        "USDJPY@point",
        "GBPUSD@point",
        "EURUSD@kline_1m",
    ];
    a.send(Message::text(
        json!({"id": 1, "method": "subscribe", "params": {"streams": streams}}).to_string(),
    ))
    .await
    .unwrap();
    let answer = next_frame(&mut a).await;
    assert_eq!(answer["error"]["code"], "ValidationError", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{answer}"
    );
    drop(a);
    eventually("a place freed", Duration::from_secs(10), || async {
        ws_with(&app, "/api/v2/ws", &h).await.ok()
    })
    .await;
    app.cleanup().await;
}

async fn a_key_removed_from_the_file_is_refused_on_every_node_within_5_s(engine: Engine) {
    let key = ratesd::access::keys::new_key().unwrap();
    let other = ratesd::access::keys::new_key().unwrap();
    let keys = KeysFile::new(&[(&key, "pro", "acme"), (&other, "free", "other")]);
    let Some(a) = spawn_app(options(engine, "required", &keys, &[])).await else {
        return;
    };
    let Some(b) = spawn_app(options(engine, "required", &keys, &[])).await else {
        return;
    };
    let h = [("x-api-key", key.as_str())];
    for node in [&a, &b] {
        assert_eq!(
            get_with(node, "/api/v1/assets", &h).await.status(),
            StatusCode::OK
        );
    }
    // What the key opened before: a WebSocket on one node, an event
    // stream on the other, and one of the key that stays.
    let mut ws = ws_with(&a, "/api/v2/ws?streams=EURUSD@point", &h)
        .await
        .unwrap();
    let mut kept = ws_with(&a, "/api/v2/ws", &[("x-api-key", &other)])
        .await
        .unwrap();
    let events = b
        .http
        .get(b.url("/api/v2/events?streams=EURUSD@point"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    keys.write(&[(&other, "free", "other")]);
    let removed = std::time::Instant::now();
    let close = close_frame(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4003, "key revoked")
    );
    let body = tokio::time::timeout(Duration::from_secs(10), events.text())
        .await
        .expect("the event stream ends")
        .unwrap();
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.contains("event: error") && last.contains("key revoked"),
        "{last}"
    );
    // The other key's connection goes on.
    kept.send(Message::text(
        json!({"id": 1, "method": "list"}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_frame(&mut kept).await["id"], 1);
    for node in [&a, &b] {
        eventually("the key revoked", Duration::from_secs(5), || async {
            let status = get_with(node, "/api/v1/assets", &h).await.status();
            (status == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        let still = get_with(node, "/api/v1/assets", &[("x-api-key", &other)]).await;
        assert_eq!(still.status(), StatusCode::OK, "the other key stays");
    }
    assert!(removed.elapsed() < Duration::from_secs(5));
    a.cleanup().await;
    b.cleanup().await;
}

crate::helpers::on_both_engines!(
    each_credential_form_is_accepted_and_each_bad_one_refused,
    a_tokens_symbols_forbid_other_assets_on_rest_v1_and_v2,
    a_websocket_is_closed_with_4001_when_its_token_expires,
    tiers_give_each_their_own_limit_and_connection_cap,
    a_key_removed_from_the_file_is_refused_on_every_node_within_5_s,
);

/// `RATES_AUTH=off` (the default) reads no credential: a garbage one is
/// nothing, the anonymous tier's headers as before.
#[tokio::test]
async fn off_reads_no_credential() {
    let Some(app) = spawn_app(Options {
        archive: false,
        extra: vec!["--rate-limit-per-second".into(), "50".into()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let resp = get_with(
        &app,
        "/api/v1/assets",
        &[("authorization", "Bearer garbage")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["ratelimit-limit"], "100");
    assert_eq!(
        resp.headers()["ratelimit-policy"],
        "100;w=2;tier=\"anonymous\""
    );
    app.cleanup().await;
}

/// `ratesd keys new` prints a key and its line; the key works once the
/// line is in the file, and neither it nor a token nor a refused key is
/// ever written to the log (at `debug`, with request spans), to
/// `/metrics` or to a problem; SIGHUP re-reads the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_new_makes_a_working_key_that_never_reaches_logs_or_metrics() {
    use std::process::Stdio;

    use crate::helpers::Process;

    let made = std::process::Command::new(env!("CARGO_BIN_EXE_ratesd"))
        .args(["keys", "new", "--tier", "pro", "--name", "acme"])
        .env("RATES_TIERS", "pro:1000/2000/8/64")
        .output()
        .expect("ratesd keys new runs");
    assert!(made.status.success(), "{made:?}");
    let out = String::from_utf8(made.stdout).unwrap();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let key = lines
        .iter()
        .find(|l| l.starts_with("rk_"))
        .expect("a key")
        .to_string();
    assert!(key.len() >= 35, "{key}");
    let line = lines
        .iter()
        .find(|l| l.ends_with(" pro acme"))
        .expect("the file's line")
        .to_string();
    assert!(
        !line.contains(&key[3..]),
        "the line holds the digest, not the key"
    );
    // An unknown tier is refused.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ratesd"))
        .args(["keys", "new", "--tier", "gold", "--name", "x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let keys = KeysFile::new(&[]);
    let id = unique_id();
    let log_path = std::env::temp_dir().join(format!("ratesd-access-log-{id}.txt"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Process::spawn(
        &[
            ("RATES_DATABASE_URL", "off"),
            ("RATES_LOG", "debug"),
            ("RATES_AUTH", "required"),
            ("RATES_KEYS_FILE", &keys.path()),
            ("RATES_JWT_KEY", SECRET),
            ("RATES_TIERS", "pro:1000/2000/8/64"),
        ],
        Stdio::from(log),
    );
    server.ready(Duration::from_secs(15)).await;
    let http = reqwest::Client::new();
    let get = |path: String, key: Option<&str>| {
        let mut request = http.get(format!("{}{path}", server.base));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        get("/api/v1/assets".into(), Some(&key)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Written in place (no rename) and SIGHUP: read at once.
    std::fs::write(keys.file(), format!("{line}\n")).unwrap();
    server.signal("HUP");
    eventually("the key accepted", Duration::from_secs(5), || async {
        (get("/api/v1/assets".into(), Some(&key)).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    let t = token(json!({"sub": "someone", "exp": now() + 300}));
    let refused = ratesd::access::keys::new_key().unwrap();
    let mut bodies = String::new();
    for (path, credential) in [
        (format!("/api/v1/rates/EURUSD?token={key}"), None),
        (format!("/api/v1/rates/EURUSD/history?token={t}"), None),
        ("/api/v1/rates".to_owned(), Some(refused.as_str())),
        ("/api/v1/rates/NOPE".to_owned(), Some(key.as_str())),
        ("/api/v1/rates".to_owned(), Some(t.as_str())),
        (
            format!("/api/v2/events?streams=NOPE@point&token={key}"),
            None,
        ),
    ] {
        bodies.push_str(&get(path, credential).await.text().await.unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/v1/ws?token={key}",
        server.port
    ))
    .await
    .expect("upgrade with ?token=");
    drop(ws);
    bodies.push_str(
        &get("/metrics".into(), Some(&key))
            .await
            .text()
            .await
            .unwrap(),
    );
    server.terminate();
    assert_eq!(server.exit(Duration::from_secs(20)).await.code(), Some(0));
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        logged.contains("API keys loaded"),
        "the log was written: {logged:.300}"
    );
    assert!(
        logged.contains("/api/v1/rates"),
        "request spans were logged"
    );
    for secret in [&key, &t, &refused] {
        let tail = &secret[secret.len() - 20..];
        assert!(!logged.contains(tail), "a credential in the log");
        assert!(!bodies.contains(tail), "a credential in a body or /metrics");
    }
    assert!(
        bodies.contains("ratesd_http_requests_by_tier_total{tier=\"pro\"}"),
        "metrics by tier"
    );
}
