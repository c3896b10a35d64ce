//! Client tokens: JWTs an application's backend signs for its browsers,
//! checked with `RATES_JWT_KEY` (an HS256 secret, or a PEM public key for
//! RS256 or ES256). Only the key's own algorithm is accepted: never
//! `none`, never an HMAC check with a public key.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

/// Seconds of clock skew allowed on `exp`.
pub const LEEWAY_SECONDS: u64 = 2;

/// An HS256 secret's least length.
pub const MIN_SECRET_BYTES: usize = 32;

/// A token's claims that ratesd reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub tier: Option<String>,
    /// The only assets the token may read (symbols as clients spell them).
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("RATES_JWT_KEY: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("RATES_JWT_KEY: not an RSA or EC public key in PEM")]
    Pem,
    #[error("RATES_JWT_KEY: cannot read {0}")]
    File(String),
}

/// Why a token is refused. The text never holds the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token signed with another algorithm than this deployment's")]
    Algorithm,
    #[error("token signature does not verify")]
    Signature,
    #[error("malformed token: {0}")]
    Malformed(String),
}

/// Checks tokens against the deployment's key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// From `RATES_JWT_KEY`: a PEM public key (inline, or `file:PATH`), or
    /// an HS256 secret.
    pub fn from_setting(value: &str) -> Result<Self, KeyError> {
        let value = match value.strip_prefix("file:") {
            Some(path) => std::fs::read_to_string(path.trim())
                .map_err(|e| KeyError::File(format!("{}: {e}", path.trim())))?,
            None => value.to_owned(),
        };
        let value = value.trim();
        let (key, algorithm): (DecodingKey, Algorithm) = if value.starts_with("-----BEGIN") {
            if let Ok(key) = DecodingKey::from_rsa_pem(value.as_bytes()) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(value.as_bytes()) {
                (key, Algorithm::ES256)
            } else {
                return Err(KeyError::Pem);
            }
        } else if value.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret);
        } else {
            let key =
                DecodingKey::from_secret(value.as_bytes()).map_err(|_| KeyError::ShortSecret)?;
            (key, Algorithm::HS256)
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self { key, validation })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// The token's claims, if it verifies and has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        match decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Malformed(format!("the claim '{claim}' is missing"))
                }
                ErrorKind::Json(_) => TokenError::Malformed("claims are not as expected".into()),
                _ => TokenError::Malformed("not a JWT".into()),
            }),
        }
    }
}
