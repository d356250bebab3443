//! Sign-in: the authorization-code flow with PKCE against the issuer, the ID token verified
//! (with this sign-in's nonce) by the same verifier the API uses, then a session cookie.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use base64::Engine as _;
use chrono::Utc;
use lapse_core::AccessProvider;
use lapse_requests::GrantEngine;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Web;
use crate::pages::{CsrfForm, Page, error_page, signed_out};
use crate::session::{self, SESSION, SIGN_IN, Session, SignIn};

/// How long a started sign-in may take.
const SIGN_IN_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

pub(crate) async fn login<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
) -> Response {
    let Some(auth) = w.oidc.discovery().authorization_endpoint.clone() else {
        return error_page(
            500,
            "the issuer's discovery document names no authorization_endpoint",
            "check auth.oidc.issuer",
        );
    };
    let s = SignIn {
        state: session::random_token(),
        nonce: session::random_token(),
        verifier: session::random_token(),
        started: Utc::now(),
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(s.verifier.as_bytes()));
    let Ok(mut url) = reqwest::Url::parse(&auth) else {
        return error_page(500, "the issuer's authorization_endpoint is not a URL", "");
    };
    let settings = w.oidc.settings();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &w.settings.redirect_url)
        .append_pair("scope", &settings.scopes.join(" "))
        .append_pair("state", &s.state)
        .append_pair("nonce", &s.nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let jar = session::jar(&headers, &w.key).add(session::cookie(
        SIGN_IN,
        serde_json::to_string(&s).unwrap_or_default(),
        false,
        w.settings.secure_cookies,
    ));
    (jar, Redirect::to(url.as_str())).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

pub(crate) async fn callback<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if let Some(e) = q.error {
        let why = q.error_description.unwrap_or_default();
        return error_page(
            401,
            &format!("the issuer refused the sign-in: {e} {why}"),
            "",
        );
    }
    let Some(started) = session::sign_in(&headers, &w.key) else {
        return error_page(
            400,
            "no sign-in was started in this browser (or it was not signed by this daemon)",
            "start again from the sign-in page",
        );
    };
    if q.state.as_deref() != Some(started.state.as_str())
        || Utc::now() - started.started > SIGN_IN_WINDOW
    {
        return error_page(
            400,
            "the sign-in's state does not match or the sign-in took too long",
            "start again from the sign-in page",
        );
    }
    let Some(code) = q.code else {
        return error_page(400, "the issuer sent no code", "start again");
    };
    let Some(token_url) = w.oidc.discovery().token_endpoint.clone() else {
        return error_page(
            500,
            "the issuer names no token_endpoint",
            "check auth.oidc.issuer",
        );
    };
    let settings = w.oidc.settings();
    let answer = w
        .http
        .post(&token_url)
        .basic_auth(
            &settings.client_id,
            Some(w.settings.client_secret.expose_secret()),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", w.settings.redirect_url.as_str()),
            ("code_verifier", started.verifier.as_str()),
        ])
        .send()
        .await;
    let id_token = match answer {
        Ok(r) if r.status().is_success() => match r.json::<TokenAnswer>().await {
            Ok(TokenAnswer { id_token: Some(t) }) => t,
            _ => return error_page(502, "the issuer's token answer has no id_token", ""),
        },
        Ok(r) => {
            let status = r.status();
            tracing::warn!(%status, "the issuer refused the code exchange");
            return error_page(
                502,
                &format!("the issuer answered {status} to the code exchange"),
                "start again",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "the code exchange failed");
            return error_page(502, "the issuer could not be reached", "try again");
        }
    };
    let caller = match w.oidc.verify_sign_in(&id_token, &started.nonce).await {
        Ok(c) => c,
        Err(r) => return error_page(401, &format!("sign-in refused: {r}"), ""),
    };
    let now = Utc::now();
    let ttl =
        chrono::Duration::from_std(w.settings.session_ttl).unwrap_or(chrono::Duration::hours(8));
    let s = Session {
        identity: caller.identity,
        role: caller.role,
        expires_at: now + ttl,
        csrf: session::random_token(),
    };
    tracing::info!(identity = %s.identity, role = %s.role, "signed in to the console");
    let jar = session::jar(&headers, &w.key)
        .remove(session::removal(SIGN_IN))
        .add(session::cookie(
            SESSION,
            serde_json::to_string(&s).unwrap_or_default(),
            true,
            w.settings.secure_cookies,
        ));
    // A page of our own rather than a redirect: the session cookie is SameSite=Strict, and a
    // redirect chain that began at the issuer would not carry it to the next page.
    (jar, Page::continue_to("/ui/")).into_response()
}

pub(crate) async fn logout<P: AccessProvider + 'static, E: GrantEngine>(
    State(w): State<Arc<Web<P, E>>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    match session::session(&headers, &w.key, Utc::now()) {
        Some(s) if session::csrf_ok(&s, &f.csrf) => {
            let jar = session::jar(&headers, &w.key).remove(session::removal(SESSION));
            (jar, signed_out()).into_response()
        }
        Some(_) => error_page(
            403,
            "the form's CSRF token is missing or wrong",
            "reload the page",
        ),
        None => signed_out().into_response(),
    }
}
