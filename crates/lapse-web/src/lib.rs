//! lapse's web console at `/ui/`: sign-in through the OpenID issuer (authorization code with
//! PKCE), then *My access*, *Request access*, *Approvals*, request and grant detail, *History*
//! with filters and exports, and *Lists*. Pages are rendered on the server from templates that
//! escape by default; there is no script. Every action calls the same request-flow service as
//! the HTTP API, so the server re-authorizes it exactly as the API does; every form carries the
//! session's CSRF token; every answer forbids framing and inline script.

mod pages;
mod session;
mod signin;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum_extra::extract::cookie::Key;
use lapse_core::AccessProvider;
use lapse_oidc::Verifier;
use lapse_requests::{GrantEngine, RequestService};
use lapse_store::Store;
use secrecy::SecretString;

pub use session::Session;

/// How the console signs people in.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// `[auth.oidc] redirect_url`: this daemon's `/ui/callback` as the issuer knows it.
    pub redirect_url: String,
    pub client_secret: SecretString,
    /// Mark cookies `Secure` (whenever the console is reached over https).
    pub secure_cookies: bool,
    /// How long a session lasts before signing in again.
    pub session_ttl: Duration,
}

/// What the console's handlers share.
pub struct Web<P, E> {
    pub(crate) flow: Arc<RequestService<P, E>>,
    pub(crate) store: Store,
    pub(crate) oidc: Arc<Verifier>,
    pub(crate) settings: WebSettings,
    /// Signs the cookies; made at start, so a restart signs everyone out.
    pub(crate) key: Key,
    pub(crate) http: reqwest::Client,
    /// The History page's last chain verification and when it was made.
    pub(crate) chain: tokio::sync::Mutex<Option<(std::time::Instant, (String, bool))>>,
}

impl<P, E> Web<P, E> {
    pub fn new(
        flow: Arc<RequestService<P, E>>,
        store: Store,
        oidc: Arc<Verifier>,
        settings: WebSettings,
    ) -> Self {
        Self {
            flow,
            store,
            oidc,
            settings,
            key: Key::generate(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            chain: tokio::sync::Mutex::new(None),
        }
    }
}

/// The console's routes, under `/ui`.
pub fn router<P: AccessProvider + 'static, E: GrantEngine>(web: Arc<Web<P, E>>) -> Router {
    Router::new()
        .route("/ui", get(pages::to_home))
        .route("/ui/", get(pages::mine::<P, E>))
        .route("/ui/login", get(signin::login::<P, E>))
        .route("/ui/callback", get(signin::callback::<P, E>))
        .route("/ui/logout", post(signin::logout::<P, E>))
        .route(
            "/ui/request",
            get(pages::request_form::<P, E>).post(pages::request_submit::<P, E>),
        )
        .route("/ui/approvals", get(pages::approvals::<P, E>))
        .route("/ui/requests/{id}", get(pages::request_detail::<P, E>))
        .route("/ui/requests/{id}/{decision}", post(pages::decide::<P, E>))
        .route("/ui/grants/{id}", get(pages::grant_detail::<P, E>))
        .route("/ui/grants/{id}/extend", post(pages::extend::<P, E>))
        .route("/ui/grants/{id}/revoke", post(pages::revoke::<P, E>))
        .route("/ui/history", get(pages::history::<P, E>))
        .route("/ui/history.csv", get(pages::history_csv::<P, E>))
        .route("/ui/history.json", get(pages::history_json::<P, E>))
        .route("/ui/lists", get(pages::lists::<P, E>))
        .route("/ui/reviews", post(pages::review::<P, E>))
        .route("/ui/static/lapse.css", get(pages::stylesheet))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

/// No framing, no inline or foreign script or style, no sniffing, no referrer.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
