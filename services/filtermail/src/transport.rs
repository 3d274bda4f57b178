//! Transport mode: Postfix hands every non-local message over LMTP; the recipients are grouped
//! by destination (recipient domain, or `[ip]` literal) and each group goes to that
//! destination's worker, which delivers through [`Remote`]. LMTP replies come one per
//! recipient, in RCPT order.
//!
//! Bounds (spec §10.6): at most [`MAX_WORKERS`] destination workers, each with a queue of
//! [`QUEUE`] messages, exiting after [`IDLE`] without work. A destination with no worker and no
//! room for one, or with a full queue, gets `421 Transport busy` (Postfix retries later); a
//! worker that died gets `451 Local error`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::timeout;

use crate::remote::{Mail, Remote};
use crate::session::{Handler, Protocol};
use crate::smtp::{Envelope, Reply};

/// Most destination workers at once.
pub const MAX_WORKERS: usize = 500;
/// Messages waiting per destination.
pub const QUEUE: usize = 30;
/// A worker without work for this long exits.
pub const IDLE: Duration = Duration::from_secs(60);

/// One message for one destination, and where its reply goes.
struct Job {
    mail: Mail,
    reply: oneshot::Sender<Reply>,
}

type Workers = Arc<Mutex<HashMap<String, mpsc::Sender<Job>>>>;

/// The LMTP handler of transport mode.
#[derive(Debug)]
pub struct Transport {
    remote: Arc<Remote>,
    /// The queue of each destination that has a worker.
    workers: Workers,
    /// One permit per running worker.
    slots: Arc<Semaphore>,
    max_message_size: usize,
}

impl Transport {
    pub fn new(remote: Remote, max_message_size: usize) -> Transport {
        Transport {
            remote: Arc::new(remote),
            workers: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_WORKERS)),
            max_message_size,
        }
    }

    /// Queues `mail` for `destination`'s worker, starting one if needed.
    fn enqueue(&self, destination: &str, mail: Mail) -> Result<oneshot::Receiver<Reply>, Reply> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = match workers.get(destination) {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                let slot = self.slots.clone().try_acquire_owned().map_err(|_| busy())?;
                let (queue, jobs) = mpsc::channel(QUEUE);
                tokio::spawn(worker(
                    destination.to_owned(),
                    jobs,
                    slot,
                    self.remote.clone(),
                    self.workers.clone(),
                ));
                workers.insert(destination.to_owned(), queue.clone());
                queue
            }
        };
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Job { mail, reply })
            .map_err(|err| match err {
                TrySendError::Full(_) => busy(),
                TrySendError::Closed(_) => local_error(),
            })?;
        Ok(answer)
    }
}

impl Handler for Transport {
    const PROTOCOL: Protocol = Protocol::Lmtp;

    fn mail_from(&self, _addr: &str) -> Result<(), Reply> {
        Ok(())
    }

    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    async fn deliver(&self, envelope: &Envelope, message: Vec<u8>) -> Vec<Reply> {
        let message = Bytes::from(message);
        let mut replies = vec![local_error(); envelope.rcpts.len()];
        let mut pending = Vec::new();
        for (destination, indices) in by_destination(&envelope.rcpts) {
            let mail = Mail {
                sender: envelope.mail_from.clone(),
                rcpts: indices.iter().map(|&i| envelope.rcpts[i].clone()).collect(),
                message: message.clone(),
            };
            match self.enqueue(&destination, mail) {
                Ok(answer) => pending.push((indices, answer)),
                Err(reply) => {
                    log::warn!("delivery to {destination}: {reply}");
                    for i in indices {
                        replies[i] = reply.clone();
                    }
                }
            }
        }
        // The workers run in parallel; waiting for them in turn takes as long as the slowest.
        for (indices, answer) in pending {
            let reply = answer.await.unwrap_or_else(|_| local_error());
            for i in indices {
                replies[i] = reply.clone();
            }
        }
        replies
    }
}

/// Delivers `destination`'s messages one after the other until idle for [`IDLE`].
async fn worker(
    destination: String,
    mut jobs: mpsc::Receiver<Job>,
    _slot: OwnedSemaphorePermit,
    remote: Arc<Remote>,
    workers: Workers,
) {
    loop {
        let job = match timeout(IDLE, jobs.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                // Leave the map first: from then on nobody can queue here; deliver what
                // was queued before that.
                {
                    let mut map = workers.lock().unwrap_or_else(PoisonError::into_inner);
                    map.remove(&destination);
                    jobs.close();
                }
                while let Some(job) = jobs.recv().await {
                    run(&remote, &destination, job).await;
                }
                return;
            }
        };
        run(&remote, &destination, job).await;
    }
}

async fn run(remote: &Remote, destination: &str, job: Job) {
    let reply = remote.deliver(destination, &job.mail).await;
    // The LMTP client may have gone; the message is then Postfix's to retry.
    let _ = job.reply.send(reply);
}

/// The recipients' destinations in order of first appearance, each with its recipients'
/// positions. The destination is the lowercased domain; a `[ip]` literal is its own.
fn by_destination(rcpts: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, rcpt) in rcpts.iter().enumerate() {
        let destination = rcpt
            .rsplit_once('@')
            .map_or(rcpt.as_str(), |(_, domain)| domain)
            .to_ascii_lowercase();
        match groups.iter_mut().find(|(d, _)| *d == destination) {
            Some((_, indices)) => indices.push(i),
            None => groups.push((destination, vec![i])),
        }
    }
    groups
}

fn busy() -> Reply {
    Reply::new(421, "Transport busy")
}

fn local_error() -> Reply {
    Reply::new(451, "Local error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_grouped_by_destination_in_order() {
        let rcpts: Vec<String> = [
            "a@x.org",
            "b@[10.0.0.1]",
            "c@X.org",
            "d@y.org",
            "e@[10.0.0.1]",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(
            by_destination(&rcpts),
            [
                ("x.org".to_owned(), vec![0, 2]),
                ("[10.0.0.1]".to_owned(), vec![1, 4]),
                ("y.org".to_owned(), vec![3]),
            ]
        );
    }
}
