//! Loading and validating settings files: defaults, overrides, and errors that name the key,
//! the bad value and what would be accepted.

use std::io::Write as _;
use std::time::Duration;

use lapse_settings::{Settings, SettingsError};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write settings");
    f
}

fn load(text: &str) -> Result<Settings, Box<SettingsError>> {
    let f = file(text);
    Settings::load(Some(f.path())).map_err(Box::new)
}

#[test]
fn built_in_defaults_need_only_the_network_url() {
    let e = Settings::defaults()
        .expect("defaults load")
        .validate()
        .expect_err("no network URL");
    assert!(e.to_string().contains("twingate.base_url"), "{e}");
    let s = load("[twingate]\nbase_url = \"https://acme.twingate.com\"\n").expect("loads");
    s.validate().expect("defaults plus the URL validate");
    assert_eq!(s.twingate.writes_per_minute, 20);
    assert_eq!(s.engine.tick, Duration::from_secs(1));
    assert_eq!(s.grants.max_duration, Duration::from_secs(24 * 3600));
}

#[test]
fn the_file_overrides_the_defaults_and_keeps_the_rest() {
    let s = load("[engine]\ntick = \"250ms\"\n[grants]\nmax_duration = \"8h\"\n").expect("loads");
    assert_eq!(s.engine.tick, Duration::from_millis(250));
    assert_eq!(s.grants.max_duration, Duration::from_secs(8 * 3600));
    assert_eq!(
        s.engine.sweep_interval,
        Duration::from_secs(300),
        "default kept"
    );
}

#[test]
fn an_unknown_key_is_named_with_the_known_ones() {
    let e = load("[engine]\ntik = \"1s\"\n").expect_err("unknown key refused");
    let msg = e.to_string();
    assert!(msg.contains("engine.tik"), "{msg}");
    assert!(msg.contains("tick"), "names the known keys: {msg}");
}

#[test]
fn a_bad_duration_names_the_key_the_value_and_the_form() {
    let e = load("[engine]\ntick = \"soon\"\n").expect_err("bad duration refused");
    let msg = e.to_string();
    assert!(msg.contains("engine.tick"), "{msg}");
    assert!(msg.contains("soon"), "{msg}");
    assert!(msg.contains("duration"), "{msg}");
}

#[test]
fn a_secret_in_the_file_is_refused_with_directions_to_a_credential_file() {
    let e = load("[twingate]\napi_key = \"tg-secret\"\n").expect_err("secret refused");
    assert!(matches!(*e, SettingsError::SecretInFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("twingate.api_key"), "{msg}");
    assert!(msg.contains("api_key_file"), "{msg}");
    assert!(
        !msg.contains("tg-secret"),
        "the secret is never echoed: {msg}"
    );
}

#[test]
fn broken_toml_is_a_syntax_error_with_its_position() {
    let e = load("[engine\ntick = 1\n").expect_err("syntax error");
    assert!(matches!(*e, SettingsError::Syntax { .. }), "{e:?}");
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn a_file_that_does_not_exist_is_an_error_when_named() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("absent.toml");
    assert!(Settings::load(Some(&missing)).is_err());
}

#[test]
fn the_api_key_comes_from_its_file_trimmed() {
    let key = file("tg-key-123\n");
    let path = key.path().display().to_string();
    let s = load(&format!("[twingate]\napi_key_file = {path:?}\n")).expect("loads");
    let secret = s.api_key().expect("key read");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "tg-key-123");
}

#[test]
fn an_openid_issuer_without_roles_or_over_plain_http_is_refused_by_name() {
    let base = "[twingate]\nbase_url = \"https://acme.twingate.com\"\n";
    let s = load(&format!(
        "{base}[auth.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"lapse\"\n"
    ))
    .expect("loads");
    let e = s.validate().expect_err("no roles mapped");
    assert!(e.to_string().contains("auth.oidc.roles"), "{e}");

    let s = load(&format!(
        "{base}[auth.oidc]\nissuer = \"http://idp.example.com\"\nclient_id = \"lapse\"\n[auth.oidc.roles]\nrequester = [\"eng\"]\n"
    ))
    .expect("loads");
    let e = s.validate().expect_err("plain http off loopback");
    assert!(e.to_string().contains("auth.oidc.issuer"), "{e}");

    let s = load(&format!(
        "{base}[auth.oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"lapse\"\n[auth.oidc.roles]\nrequester = [\"eng\"]\n"
    ))
    .expect("loads");
    s.validate().expect("a complete [auth.oidc] validates");
    let oidc = s.auth.oidc.expect("oidc");
    assert_eq!(oidc.identity_claim, "email");
    assert_eq!(oidc.clock_skew, Duration::from_secs(60));
}

const NET: &str = "[twingate]\nbase_url = \"https://acme.twingate.com\"\n";

#[test]
fn sqlite_is_the_default_store_and_a_postgres_url_chooses_postgres() {
    let s = load(NET).expect("loads");
    assert!(matches!(
        s.database_location().expect("location"),
        lapse_store::Location::Sqlite(p) if p == std::path::Path::new("/var/lib/lapse/lapse.db")
    ));
    assert_eq!(s.ha.lease, Duration::from_secs(10));

    let dir = tempfile::tempdir().expect("dir");
    let pw = dir.path().join("db.password");
    std::fs::write(&pw, "hunter2\n").expect("password file");
    let s = load(&format!(
        "{NET}[database]\nurl = \"postgres://lapse@db.internal:5432/lapse\"\npassword_file = \"{}\"\n[ha]\nlease = \"6s\"\nnode = \"n1\"\n",
        pw.display()
    ))
    .expect("loads");
    s.validate().expect("validates");
    assert_eq!(s.ha.lease, Duration::from_secs(6));
    assert_eq!(s.node_name(), "n1");
    match s.database_location().expect("location") {
        lapse_store::Location::Postgres { url, password } => {
            assert_eq!(url, "postgres://lapse@db.internal:5432/lapse");
            assert_eq!(password.as_deref(), Some("hunter2"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_password_in_the_url_or_the_file_is_refused_without_being_shown() {
    let s = load(&format!(
        "{NET}[database]\nurl = \"postgres://lapse:hunter2@db/lapse\"\n"
    ))
    .expect("loads");
    let e = s.validate().expect_err("a password in the URL").to_string();
    assert!(
        e.contains("database.url") && e.contains("password_file"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    let e = load(&format!("{NET}[database]\npassword = \"hunter2\"\n"))
        .expect_err("a password key")
        .to_string();
    assert!(
        e.contains("database.password") && e.contains("database.password_file"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    let s = load(&format!("{NET}[database]\nurl = \"mysql://db/lapse\"\n")).expect("loads");
    let e = s.validate().expect_err("not PostgreSQL").to_string();
    assert!(
        e.contains("database.url") && e.contains("postgres://"),
        "{e}"
    );
}

#[test]
fn a_lease_outside_its_bounds_or_a_missing_password_file_is_named() {
    let s = load(&format!("{NET}[ha]\nlease = \"500ms\"\n")).expect("loads");
    let e = s.validate().expect_err("too short").to_string();
    assert!(e.contains("ha.lease") && e.contains("2s to 5m"), "{e}");

    let s = load(&format!(
        "{NET}[database]\nurl = \"postgres://lapse@db/lapse\"\npassword_file = \"/nonexistent/pw\"\n"
    ))
    .expect("loads");
    let e = s.database_location().expect_err("no file").to_string();
    assert!(e.contains("/nonexistent/pw"), "{e}");
}
