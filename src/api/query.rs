//! Query strings read as named text parameters, so that every bad one
//! (malformed, given twice) gets a problem body naming it rather than a
//! deserializer's message.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;

/// The query's parameters by name. Unknown names are ignored (clients add
/// cache busters); a name given twice is refused.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if map
                .insert(name.clone().into_owned(), value.into_owned())
                .is_some()
            {
                let shown: String = name.chars().take(40).collect();
                return Err(ApiError::invalid(
                    param_name(&name),
                    format!("parameter '{shown}' is given more than once; give it once"),
                ));
            }
        }
        Ok(Self(map))
    }

    /// Takes a parameter's value out.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }
}

/// The `parameter` of a problem about `name`: the names the API knows are
/// `'static`; any other is reported as `query`.
fn param_name(name: &str) -> &'static str {
    const KNOWN: [&str; 6] = ["from", "to", "limit", "cursor", "symbols", "interval"];
    KNOWN.into_iter().find(|k| *k == name).unwrap_or("query")
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_once_each() {
        let mut p = Params::parse("from=1&to=2&_=3&cursor=a%2Bb").unwrap();
        assert_eq!(p.take("from").as_deref(), Some("1"));
        assert_eq!(p.take("cursor").as_deref(), Some("a+b"));
        assert_eq!(p.take("limit"), None);
        assert!(Params::parse("").is_ok());
    }

    #[test]
    fn a_repeated_parameter_is_named() {
        let e = Params::parse("limit=1&limit=2").unwrap_err();
        assert!(matches!(
            e,
            ApiError::InvalidParameter {
                parameter: "limit",
                ..
            }
        ));
        assert!(e.to_string().contains("'limit' is given more than once"));
        let e = Params::parse("x=1&x=2").unwrap_err();
        assert!(matches!(
            e,
            ApiError::InvalidParameter {
                parameter: "query",
                ..
            }
        ));
    }
}
