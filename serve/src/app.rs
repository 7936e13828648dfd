//! The axum application: the access log, auth, and dispatch by route to the handlers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::Verdict;
use crate::error::{ApiError, Code};
use crate::route::{self, Route};
use crate::state::{State, API_VERSION};

/// The router with its layers.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_response(api_version))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let peer = req.extensions().get::<SocketAddr>().copied();
                    tracing::info_span!(
                        "request",
                        peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                        method = %req.method(),
                        uri = %req.uri(),
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(state)
}

async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

async fn authenticate(Extract(state): Extract<Arc<State>>, req: Request, next: Next) -> Response {
    if let Some(auth) = &state.auth {
        let peer = req.extensions().get::<SocketAddr>().map(SocketAddr::ip);
        match auth
            .check(req.headers().get(header::AUTHORIZATION), peer, &state.stats)
            .await
        {
            Verdict::Ok => {}
            Verdict::Unauthorized => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Code::Unauthorized,
                    "authentication required: basic auth with a user of the htpasswd file",
                )
                .with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sealift\", charset=\"UTF-8\""),
                )
                .into_response()
            }
            Verdict::Throttled(secs) => {
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::TooManyRequests,
                    format!("too many failed sign-ins from this address: try again in {secs} s"),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
                .into_response()
            }
        }
    }
    next.run(req).await
}

async fn dispatch(Extract(state): Extract<Arc<State>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        ref m => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unsupported,
                format!("{m} is not supported: this registry serves a sealift store read-only"),
            )
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"))
            .into_response()
        }
    };
    let query = route::query(&parts.uri);
    let result = match route::parse(parts.uri.path()) {
        Err(e) => Err(e),
        Ok(Route::Base) => Ok(axum::Json(serde_json::json!({})).into_response()),
        Ok(Route::Catalog) => crate::tag::catalog(&state, &query).await,
        Ok(Route::Tags(repo)) => crate::tag::list(&state, repo, &query).await,
        Ok(Route::Manifest(repo, r)) => {
            crate::manifest::get(&state, repo, r, &parts.headers, head).await
        }
        Ok(Route::Blob(repo, d)) => crate::blob::get(&state, repo, d, &parts.headers, head).await,
        Ok(Route::Referrers(repo, d)) => crate::referrer::list(&state, repo, d, &query).await,
        Ok(Route::Upload(repo)) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("uploads to {repo} are not supported: this registry is read-only"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}
