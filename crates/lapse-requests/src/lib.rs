//! The request flow and grant submission, apart from any transport: a service that the HTTP
//! API (and later the web console and chat approvals) calls with typed inputs.

pub mod credential;
pub mod engine;
pub mod error;
pub mod flow;
pub mod notify;
pub mod oncall;
pub mod settings;
pub mod submit;
pub mod wire;

pub use engine::GrantEngine;
pub use error::{FlowError, FlowResult};
pub use flow::{
    AccessFilesCheck, Actor, RequestService, RevokeRule, Tick, check_access_files, is_own,
    may_revoke, requester_of,
};
pub use settings::{AccessSettings, SlackSettings};
pub use submit::Submitter;
