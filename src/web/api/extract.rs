//! Query and path extractors that answer a bad request the way every other API error is
//! answered: JSON naming the parameter at fault (axum's own answer in plain text).

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::web::error::ApiError;

/// The query string read into `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Reads a query string (without its `?`); an error names the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::BadRequest {
                field: None,
                message: format!("invalid query string: {inner}"),
            }
        } else {
            ApiError::field(&path, format!("{path}: {inner}"))
        }
    })
}

/// The path parameters read into `T`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_error(rejection)),
        }
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let message = rejection.body_text();
    let key = match &rejection {
        PathRejection::FailedToDeserializePathParams(failed) => match failed.kind() {
            ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    match key {
        Some(key) => ApiError::field(&key, message),
        None => ApiError::BadRequest {
            field: None,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Page {
        limit: Option<usize>,
        search: Option<String>,
    }

    #[test]
    fn a_bad_parameter_is_named() {
        match parse_query::<Page>("search=x&limit=lots") {
            Err(ApiError::BadRequest { field, message }) => {
                assert_eq!(field.as_deref(), Some("limit"));
                assert!(message.starts_with("limit: "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_query_is_read_percent_decoded() {
        let page: Page = parse_query("search=Ann%20Lee&limit=5").unwrap();
        assert_eq!(page.limit, Some(5));
        assert_eq!(page.search.as_deref(), Some("Ann Lee"));
        let empty: Page = parse_query("").unwrap();
        assert!(empty.limit.is_none() && empty.search.is_none());
    }
}
