//! Test helpers: start a stand-in on a random loopback port and talk GraphQL to it over HTTP.
#![allow(dead_code)]

use serde_json::{Value, json};
use twingate_sim::{SimConfig, SimHandle};

pub const ADMIN: &str = twingate_sim::DEMO_ADMIN_KEY;
pub const RW: &str = twingate_sim::DEMO_RW_KEY;
pub const READ: &str = twingate_sim::DEMO_READ_KEY;

pub struct Sim {
    pub handle: SimHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> Sim {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> Sim {
    let handle = twingate_sim::start(config).await.expect("sim starts");
    Sim {
        handle,
        http: reqwest::Client::new(),
    }
}

/// An HTTP answer: status and the body parsed as JSON (Null when it is not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    pub fn first_error(&self) -> String {
        self.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {}", self.body))
            .to_string()
    }
}

impl Sim {
    pub fn url(&self) -> String {
        format!("{}/api/graphql/", self.handle.base_url())
    }

    pub async fn post(&self, key: Option<&str>, body: Value) -> Answer {
        let mut req = self.http.post(self.url()).json(&body);
        if let Some(key) = key {
            req = req.header("X-API-KEY", key);
        }
        let resp = req.send().await.expect("request completes");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            text,
            headers,
        }
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Answer {
        self.post(Some(ADMIN), json!({"query": query, "variables": variables}))
            .await
    }

    pub async fn gql_as(&self, key: &str, query: &str, variables: Value) -> Answer {
        self.post(Some(key), json!({"query": query, "variables": variables}))
            .await
    }

    pub fn group_id(&self, name: &str) -> String {
        self.handle
            .state()
            .group_named(name)
            .unwrap_or_else(|| panic!("group {name}"))
            .id
            .clone()
    }

    pub fn user_id(&self, email: &str) -> String {
        self.handle
            .state()
            .user_by_email(email)
            .unwrap_or_else(|| panic!("user {email}"))
            .id
            .clone()
    }

    pub fn resource_id(&self, name: &str) -> String {
        self.handle
            .state()
            .resource_named(name)
            .unwrap_or_else(|| panic!("resource {name}"))
            .id
            .clone()
    }

    pub fn sa_id(&self, name: &str) -> String {
        self.handle
            .state()
            .service_account_named(name)
            .unwrap_or_else(|| panic!("service account {name}"))
            .id
            .clone()
    }

    pub fn group_users(&self, name: &str) -> Vec<String> {
        self.handle
            .state()
            .group_named(name)
            .map(|g| g.user_ids.clone())
            .unwrap_or_default()
    }
}
