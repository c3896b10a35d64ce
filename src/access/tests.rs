use axum::http::{HeaderMap, HeaderValue, Uri};
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::token::{TokenError, Verifier};
use super::*;
use crate::clock::unix_now;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/jwt/rsa-public.pem");
const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/jwt/rsa-private.pem");
const EC_PUBLIC: &str = include_str!("../../tests/fixtures/jwt/ec-public.pem");
const EC_PRIVATE: &str = include_str!("../../tests/fixtures/jwt/ec-private.pem");

fn claims(exp_in: i64) -> serde_json::Value {
    json!({"sub": "user-1", "exp": unix_now() + exp_in, "tier": "pro", "symbols": ["EURUSD", "usd-jpy", "NOPE"]})
}

fn sign(alg: jsonwebtoken::Algorithm, key: &EncodingKey, exp_in: i64) -> String {
    encode(&Header::new(alg), &claims(exp_in), key).unwrap()
}

#[test]
fn each_algorithm_verifies_with_its_own_key() {
    use jsonwebtoken::Algorithm::*;
    let hs = Verifier::from_setting(SECRET).unwrap();
    let token = sign(HS256, &secret_key(SECRET.as_bytes()), 60);
    assert_eq!(hs.verify(&token).unwrap().sub, "user-1");

    let rs = Verifier::from_setting(RSA_PUBLIC).unwrap();
    assert_eq!(rs.algorithm(), RS256);
    let token = sign(
        RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        60,
    );
    assert!(rs.verify(&token).is_ok());

    let es = Verifier::from_setting(EC_PUBLIC).unwrap();
    assert_eq!(es.algorithm(), ES256);
    let token = sign(
        ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        60,
    );
    assert!(es.verify(&token).is_ok());
    // An ES256 token is nothing to the RS256 deployment.
    assert_eq!(rs.verify(&token).unwrap_err(), TokenError::Algorithm);
}

#[test]
fn bad_tokens_are_refused_for_what_they_are() {
    use jsonwebtoken::Algorithm::*;
    let hs = Verifier::from_setting(SECRET).unwrap();
    let expired = sign(HS256, &secret_key(SECRET.as_bytes()), -30);
    assert_eq!(hs.verify(&expired).unwrap_err(), TokenError::Expired);
    let other = sign(
        HS256,
        &secret_key(b"another-secret-of-32-bytes-or-more!!"),
        60,
    );
    assert_eq!(hs.verify(&other).unwrap_err(), TokenError::Signature);
    assert!(matches!(
        hs.verify("not.a.jwt"),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(hs.verify(""), Err(TokenError::Malformed(_))));
    let no_sub = encode(
        &Header::new(HS256),
        &json!({"exp": unix_now() + 60}),
        &secret_key(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(hs.verify(&no_sub), Err(TokenError::Malformed(_))));

    // `alg: none`, unsigned.
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(60))
    );
    assert!(hs.verify(&none).is_err());
    let rs = Verifier::from_setting(RSA_PUBLIC).unwrap();
    assert!(rs.verify(&none).is_err());
    // HS256 signed with the deployment's RSA public key as the secret.
    let confused = sign(HS256, &secret_key(RSA_PUBLIC.as_bytes()), 60);
    assert_eq!(rs.verify(&confused).unwrap_err(), TokenError::Algorithm);
}

#[test]
fn short_secrets_and_bad_pems_are_refused_at_start() {
    assert_eq!(
        Verifier::from_setting("too short").unwrap_err(),
        token::KeyError::ShortSecret
    );
    assert_eq!(
        Verifier::from_setting("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
            .unwrap_err(),
        token::KeyError::Pem
    );
}

fn gate(mode: &str) -> Gate {
    let config = Config::from_args([
        "ratesd",
        "--auth",
        mode,
        "--jwt-key",
        SECRET,
        "--tiers",
        "pro:10/20/3/4",
    ])
    .unwrap();
    Gate::new(&config, Arc::new(Catalog::with_extra("").unwrap())).unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[test]
fn the_gate_reads_credentials_only_where_they_matter() {
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let api: Uri = "/api/v1/rates".parse().unwrap();
    let required = gate("required");
    assert_eq!(
        required
            .identify(peer, &HeaderMap::new(), &api, || false)
            .unwrap_err(),
        Refusal::Missing
    );
    // Open paths stay open, and the page is not an upgrade.
    for open in [
        "/",
        "/docs",
        "/problems/unauthorized",
        "/health/live",
        "/api-docs/openapi.json",
    ] {
        let who = required
            .identify(peer, &HeaderMap::new(), &open.parse().unwrap(), || false)
            .unwrap();
        assert_eq!(who.client, Client::Ip(peer), "{open}");
    }
    let root: Uri = "/".parse().unwrap();
    assert_eq!(
        required
            .identify(peer, &HeaderMap::new(), &root, || true)
            .unwrap_err(),
        Refusal::Missing
    );

    let token = sign(
        jsonwebtoken::Algorithm::HS256,
        &secret_key(SECRET.as_bytes()),
        60,
    );
    let who = required
        .identify(peer, &bearer(&token), &api, || false)
        .unwrap();
    assert_eq!(who.client, Client::Subject("user-1".into()));
    assert_eq!(who.tier.name, "pro");
    // EURUSD and USDJPY; the unknown symbol is dropped.
    assert_eq!(who.scope.ids().map(<[u32]>::len), Some(2));
    assert!(who.expires.is_some());

    // `?token=` only on upgrades and the event stream.
    let in_query: Uri = format!("/api/v2/events?streams=EURUSD@point&token={token}")
        .parse()
        .unwrap();
    assert!(
        required
            .identify(peer, &HeaderMap::new(), &in_query, || false)
            .is_ok()
    );
    let rest_query: Uri = format!("/api/v1/rates?token={token}").parse().unwrap();
    assert_eq!(
        required
            .identify(peer, &HeaderMap::new(), &rest_query, || false)
            .unwrap_err(),
        Refusal::Missing
    );

    // Unknown keys, and tokens where none are accepted.
    assert_eq!(
        required
            .identify(peer, &bearer("rk_nope"), &api, || false)
            .unwrap_err(),
        Refusal::UnknownKey
    );
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("rk_nope"));
    assert_eq!(
        required.identify(peer, &h, &api, || false).unwrap_err(),
        Refusal::UnknownKey
    );

    // optional: no credential is anonymous; a bad one is still refused.
    let optional = gate("optional");
    let who = optional
        .identify(peer, &HeaderMap::new(), &api, || false)
        .unwrap();
    assert_eq!(
        (who.kind(), who.tier.name.as_str()),
        ("anonymous", "anonymous")
    );
    assert!(
        optional
            .identify(peer, &bearer("garbage"), &api, || false)
            .is_err()
    );

    // off: nothing is read.
    let off = gate("off");
    let who = off
        .identify(peer, &bearer("garbage"), &api, || false)
        .unwrap();
    assert_eq!(who.client, Client::Ip(peer));
}

#[test]
fn refusals_challenge_without_the_credential() {
    let r = Refusal::Token(TokenError::Expired);
    assert_eq!(r.reason(), "expired");
    assert!(
        r.challenge()
            .starts_with("Bearer realm=\"ratesd\", error=\"invalid_token\"")
    );
    assert_eq!(Refusal::Missing.challenge(), "Bearer realm=\"ratesd\"");
}

fn xff(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    h
}

#[test]
fn forwarded_for_is_trusted_only_from_proxies() {
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let client: IpAddr = "203.0.113.9".parse().unwrap();
    let other: IpAddr = "198.51.100.7".parse().unwrap();
    // Untrusted peer: the header is ignored.
    assert_eq!(client_ip(&[], other, &xff("203.0.113.9")), other);
    // Trusted peer: the right-most untrusted entry (a client can forge the left ones).
    assert_eq!(
        client_ip(&[proxy], proxy, &xff("1.2.3.4, 203.0.113.9")),
        client
    );
    assert_eq!(
        client_ip(&[proxy], proxy, &xff("203.0.113.9, 10.0.0.1")),
        client
    );
    assert_eq!(client_ip(&[proxy], proxy, &xff("garbage")), proxy);
    assert_eq!(client_ip(&[proxy], proxy, &HeaderMap::new()), proxy);
}

fn secret_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).unwrap()
}
