//! The request flow's and grant submission's one error type.

use lapse_core::access_list::Refusal;
use lapse_core::policy::FieldError;
use lapse_engine::EngineError;
use lapse_store::StoreError;

/// Why a step of the flow or a submission did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The rules of the list or the request's state forbid it.
    #[error("{0}")]
    Refused(Refusal),
    /// No rule allows a direct grant; the message names what would.
    #[error("{0}")]
    NotAuthorized(lapse_core::grant_policy::DirectRefusal),
    /// Bad input: the field and the fix.
    #[error("{}: {} ({})", .0.field, .0.message, .0.fix)]
    Field(FieldError),
    #[error("{0}")]
    NotFound(String),
    /// The request or grant is no longer in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// Twingate could not be asked to resolve names.
    #[error("could not resolve names in Twingate: {0}")]
    Unavailable(String),
    /// An approved request's target could not be granted.
    #[error("the list's target could not be granted: {0}")]
    GrantRefused(Box<FlowError>),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A broken assumption inside lapse.
    #[error("{0}")]
    Internal(String),
}

impl FlowError {
    pub fn field(field: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Field(FieldError::new(field, message, fix))
    }
}

impl From<FieldError> for FlowError {
    fn from(e: FieldError) -> Self {
        Self::Field(e)
    }
}

impl From<Refusal> for FlowError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

pub type FlowResult<T> = Result<T, FlowError>;

/// A request decided meanwhile is a conflict like any other "no longer pending"; every other
/// store failure stays one.
impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RequestDecided { .. } | StoreError::AlreadyApproved { .. } => {
                FlowError::Conflict(e.to_string())
            }
            e => FlowError::Store(e),
        }
    }
}
