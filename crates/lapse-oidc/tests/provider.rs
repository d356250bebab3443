//! Bearer JWTs from a real OpenID provider on loopback: accepted when they are what the issuer
//! signed for lapse, refused with the reason when the audience, the time, the key, the algorithm
//! or the claims are wrong.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::op::{self, Provider};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lapse_core::Role;
use lapse_oidc::{OidcSettings, Refusal, RoleGroups, Verifier};
use serde_json::Value;

fn settings(issuer: &str) -> OidcSettings {
    let mut s = OidcSettings::for_issuer(issuer, op::LAPSE.id);
    s.roles = RoleGroups {
        admin: vec!["platform-admins".into()],
        operator: Vec::new(),
        requester: vec!["engineering".into()],
        auditor: vec!["audit".into()],
    };
    s
}

fn id_token(answer: &Value) -> String {
    answer["id_token"].as_str().expect("an id_token").to_owned()
}

/// The claims of `token`, read without verifying (to forge a copy).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A fresh RSA key the issuer never published, as PKCS#8 PEM.
fn foreign_rsa_pem() -> String {
    let out = std::process::Command::new("node")
        .args([
            "-e",
            "const {generateKeyPairSync}=require('node:crypto');\
             const {privateKey}=generateKeyPairSync('rsa',{modulusLength:2048});\
             process.stdout.write(privateKey.export({type:'pkcs8',format:'pem'}))",
        ])
        .output()
        .expect("node runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("PEM")
}

#[tokio::test]
async fn a_token_the_issuer_signed_for_lapse_maps_to_identity_and_role() {
    let p = Provider::start(600);
    let v = Verifier::discover(settings(&p.issuer))
        .await
        .expect("discovered");

    let alice = v
        .verify(&id_token(&p.sign_in(&op::LAPSE, "alice").await))
        .await
        .expect("alice's token verifies");
    assert_eq!(alice.identity, "alice@example.com");
    assert_eq!(alice.role, Role::Requester);
    assert_eq!(alice.subject, "alice");

    let root = v
        .verify(&id_token(&p.sign_in(&op::LAPSE, "root").await))
        .await
        .expect("root's token verifies");
    assert_eq!(root.role, Role::Admin);

    let audrey = v
        .verify(&id_token(&p.sign_in(&op::LAPSE, "audrey").await))
        .await
        .expect("audrey's token verifies");
    assert_eq!(audrey.role, Role::Auditor);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let p = Provider::start(600);
    let v = Verifier::discover(settings(&p.issuer))
        .await
        .expect("discovered");
    let other = id_token(&p.sign_in(&op::OTHER, "alice").await);
    assert_eq!(claims_of(&other)["aud"], op::OTHER.id);
    let e = v.verify(&other).await.expect_err("wrong audience");
    assert!(matches!(e, Refusal::Audience { .. }), "{e:?}");

    // Accepted once that audience is configured too.
    let mut s = settings(&p.issuer);
    s.audiences = vec![op::OTHER.id.into()];
    let v = Verifier::discover(s).await.expect("discovered");
    v.verify(&other)
        .await
        .expect("accepted for a configured audience");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let p = Provider::start(2);
    let mut s = settings(&p.issuer);
    s.clock_skew = Duration::ZERO;
    let v = Verifier::discover(s).await.expect("discovered");
    let token = id_token(&p.sign_in(&op::LAPSE, "alice").await);
    v.verify(&token).await.expect("valid while fresh");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(v.verify(&token).await, Err(Refusal::Expired));
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let p = Provider::start(600);
    let v = Verifier::discover(settings(&p.issuer))
        .await
        .expect("discovered");
    let genuine = id_token(&p.sign_in(&op::LAPSE, "alice").await);
    let kid = jsonwebtoken::decode_header(&genuine)
        .expect("header")
        .kid
        .expect("the provider names its key");
    let mut claims = claims_of(&genuine);
    claims["groups"] = serde_json::json!(["platform-admins"]);
    let key = EncodingKey::from_rsa_pem(foreign_rsa_pem().as_bytes()).expect("key");

    // Same algorithm and the issuer's key id, another key: the signature fails.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(&header, &claims, &key).expect("signed");
    assert_eq!(v.verify(&forged).await, Err(Refusal::Signature));

    // A key id the issuer does not publish.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("not-published".into());
    let forged = jsonwebtoken::encode(&header, &claims, &key).expect("signed");
    assert!(matches!(
        v.verify(&forged).await,
        Err(Refusal::UnknownKey { .. })
    ));

    // A shared-secret algorithm is never accepted, whatever the secret.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"guess"),
    )
    .expect("signed");
    assert_eq!(
        v.verify(&hs).await,
        Err(Refusal::Algorithm(Algorithm::HS256))
    );
}

#[tokio::test]
async fn unverified_emails_and_unmapped_groups_get_no_access() {
    let p = Provider::start(600);
    let v = Verifier::discover(settings(&p.issuer))
        .await
        .expect("discovered");
    let mallory = id_token(&p.sign_in(&op::LAPSE, "mallory").await);
    assert_eq!(v.verify(&mallory).await, Err(Refusal::EmailNotVerified));
    let sam = id_token(&p.sign_in(&op::LAPSE, "sam").await);
    assert!(matches!(v.verify(&sam).await, Err(Refusal::NoRole { .. })));
}

#[tokio::test]
async fn an_issuer_that_names_itself_differently_is_refused_at_start() {
    let p = Provider::start(600);
    let mut s = settings(&p.issuer);
    s.issuer = p.issuer.replace("127.0.0.1", "localhost");
    let e = Verifier::discover(s).await.expect_err("mismatch");
    assert!(e.to_string().contains("auth.oidc.issuer"), "{e}");
}
