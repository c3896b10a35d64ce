//! Query strings read as named text parameters, so that every bad one
//! (malformed, given twice) gets a problem body naming it rather than a
//! deserializer's message.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;

/// The query's parameters by name. Unknown names are ignored (clients add
/// cache busters), also when repeated; a parameter a route reads that is
/// given twice is refused, by its name, when the route takes it.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, Given>);

#[derive(Debug)]
enum Given {
    Once(String),
    Repeated,
}

impl Params {
    pub fn parse(query: &str) -> Self {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            map.entry(name.into_owned())
                .and_modify(|given| *given = Given::Repeated)
                .or_insert_with(|| Given::Once(value.into_owned()));
        }
        Self(map)
    }

    /// Takes a parameter's value out; one given more than once is refused.
    pub fn take(&mut self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Given::Once(value)) => Ok(Some(value)),
            Some(Given::Repeated) => Err(ApiError::invalid(
                name,
                format!("parameter '{name}' is given more than once; give it once"),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_once_each() {
        let mut p = Params::parse("from=1&to=2&_=3&cursor=a%2Bb");
        assert_eq!(p.take("from").unwrap().as_deref(), Some("1"));
        assert_eq!(p.take("cursor").unwrap().as_deref(), Some("a+b"));
        assert_eq!(p.take("limit").unwrap(), None);
        assert_eq!(Params::parse("").take("from").unwrap(), None);
    }

    #[test]
    fn a_repeated_parameter_is_named_when_taken() {
        let mut p = Params::parse("limit=1&limit=2&amount=1&amount=2&x=1&x=2");
        for name in ["limit", "amount"] {
            let e = p.take(name).unwrap_err();
            assert!(
                matches!(e, ApiError::InvalidParameter { parameter, .. } if parameter == name),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .contains(&format!("'{name}' is given more than once"))
            );
        }
        // A repeated parameter no route reads is ignored, as unknown ones are.
        assert_eq!(p.take("from").unwrap(), None);
    }
}
