//! The page, its script and style, and the OpenAPI document: compiled into
//! the binary, so serve needs no files and loads nothing from elsewhere.

use super::error::ApiError;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const DOM_JS: &str = include_str!("assets/dom.js");
const GRAPH_JS: &str = include_str!("assets/graph.js");
const STYLE: &str = include_str!("assets/style.css");
const OPENAPI: &str = include_str!("assets/openapi.json");

/// The page is the same for everyone: who may do what is the API's to say.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (kind, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "dom.js" => ("text/javascript; charset=utf-8", DOM_JS),
        "graph.js" => ("text/javascript; charset=utf-8", GRAPH_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE),
        _ => {
            return Err(ApiError::not_found(format!(
                "no asset {:?}",
                name.chars().take(80).collect::<String>()
            )))
        }
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
