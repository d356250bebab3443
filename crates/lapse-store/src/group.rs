//! Group commit for grant submissions: concurrent inserts share one durable transaction, so the
//! API's throughput is not bounded by one fsync per grant. Each caller is answered only after the
//! transaction holding its grant has committed (I4).

use tokio::sync::{mpsc, oneshot};

use lapse_core::Grant;

use crate::{Idempotency, Inserted, Store, StoreError};

/// Grants gathered into one transaction at most.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;
/// A grant, its key, the rule that authorized it, and where to answer.
type Job = (Grant, Option<Idempotency>, Option<String>, Reply);

/// A handle that inserts grants through a background group-commit task.
#[derive(Clone)]
pub struct GrantInserter {
    tx: mpsc::Sender<Job>,
}

impl GrantInserter {
    /// Start the committing task on the current runtime. It ends when every handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Insert one grant; returns once it is durably stored (or refused).
    pub async fn insert(
        &self,
        grant: Grant,
        idempotency: Option<Idempotency>,
        rule: &str,
    ) -> Result<Inserted, StoreError> {
        let (reply, rx) = oneshot::channel();
        let closed = || StoreError::Io {
            step: "queueing a grant for commit",
            source: std::io::Error::other("the store's commit task has stopped"),
        };
        self.tx
            .send((grant, idempotency, Some(rule.to_owned()), reply))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|(g, i, a, r)| ((g, i, a), r)).unzip();
        match store.insert_authorized(items).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                // Nothing of the batch was stored: every caller is told so.
                let message = e.to_string();
                let mut first = Some(e);
                for reply in replies {
                    let err = first.take().unwrap_or_else(|| StoreError::Io {
                        step: "committing a batch of grants",
                        source: std::io::Error::other(message.clone()),
                    });
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}
