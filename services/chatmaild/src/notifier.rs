//! The push notifier: a persistent queue of `(address, start time, device token)` items,
//! each a file `pending_notifications/<hex id>` holding `addr\nstart_ts\ntoken`, delivered by
//! `POST <endpoint>` with the token as body. 200 delivers, 410 also forgets the token, any
//! other answer or a network error moves the item to the next retry level (delays 0, 8, 64,
//! 512, 4096 s by default). Past the last level, or past the deadline after its start, an item
//! is dropped. Items left on disk are re-queued on start, so a restart loses none.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{self, AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chatmail_config::Config;

use crate::accounts::Account;

/// The push service every chatmail relay notifies by default.
pub const DEFAULT_ENDPOINT: &str = "https://notifications.delta.chat/notify";

/// Where notifications go and how hard they are retried.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: String,
    /// The wait before the try at each level; the first is usually zero.
    pub delays: Vec<Duration>,
    /// Items older than this (since they were queued) are dropped instead of retried.
    pub deadline: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl Settings {
    /// Upstream's schedule: five levels, 8^n seconds apart, a 60 s request timeout and a 5 h deadline.
    pub fn new(endpoint: &str) -> Settings {
        Settings {
            endpoint: endpoint.to_owned(),
            delays: [0, 8, 64, 512, 4096]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            deadline: Duration::from_secs(5 * 3600),
            timeout: Duration::from_secs(60),
        }
    }
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// The file name in the queue folder.
    id: String,
    addr: String,
    start_ts: i64,
    token: String,
}

impl Item {
    fn parse(id: &str, text: &str) -> Option<Item> {
        let mut lines = text.splitn(3, '\n');
        let addr = lines.next().filter(|a| a.contains('@'))?;
        // Upstream may have written a float.
        let start_ts = lines.next()?.trim().parse::<f64>().ok()? as i64;
        let token = lines.next().filter(|t| !t.is_empty())?;
        Some(Item {
            id: id.to_owned(),
            addr: addr.to_owned(),
            start_ts,
            token: token.to_owned(),
        })
    }
}

struct Entry {
    due: Instant,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Level {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    ready: Condvar,
}

struct Shared {
    config: Arc<Config>,
    settings: Settings,
    queue_dir: PathBuf,
    levels: Vec<Level>,
    agent: ureq::Agent,
    seq: AtomicU64,
    stopping: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle on the running notifier; clones share it.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("endpoint", &self.shared.settings.endpoint)
            .field("queue_dir", &self.shared.queue_dir)
            .finish()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The queue folder of a relay: `<mailboxes_dir>/pending_notifications`.
pub fn queue_dir(config: &Config) -> PathBuf {
    config.mailboxes_dir.join("pending_notifications")
}

impl Notifier {
    /// Creates the queue folder, re-queues what a previous run left there and starts the
    /// workers: 4 for first tries, 2 for each retry level.
    pub fn start(config: Arc<Config>, settings: Settings) -> Result<Notifier> {
        let notifier = Notifier {
            shared: Arc::new(Shared::new(config, settings)?),
        };
        notifier.shared.requeue()?;
        let mut workers = locked(&notifier.shared.workers);
        for level in 0..notifier.shared.levels.len() {
            for _ in 0..if level == 0 { 4 } else { 2 } {
                let shared = Arc::clone(&notifier.shared);
                let worker = std::thread::Builder::new()
                    .name(format!("notify-{level}"))
                    .spawn(move || shared.work(level))
                    .context("starting a notifier thread")?;
                workers.push(worker);
            }
        }
        drop(workers);
        Ok(notifier)
    }

    /// Queues one notification per token of `addr`, persisted before this returns.
    pub fn notify(&self, addr: &str, tokens: &[String]) -> Result<()> {
        let start_ts = crate::unix_now();
        for token in tokens {
            let item = Item {
                id: crate::random::hex_id()?,
                addr: addr.to_owned(),
                start_ts,
                token: token.clone(),
            };
            let path = self.shared.queue_dir.join(&item.id);
            let content = format!("{}\n{}\n{}", item.addr, item.start_ts, item.token);
            crate::files::write_atomic(&path, content.as_bytes())?;
            self.shared.push(0, Duration::ZERO, item);
        }
        Ok(())
    }

    /// Stops the workers after their current request; queued items stay on disk.
    pub fn stop(&self) {
        self.shared.stopping.store(true, atomic::Ordering::SeqCst);
        for level in &self.shared.levels {
            let _queue = locked(&level.queue);
            level.ready.notify_all();
        }
        let workers = std::mem::take(&mut *locked(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn remove(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        eprintln!("warning: removing {}: {err}", path.display());
    }
}

impl Shared {
    /// The queue folder (created), the levels and the HTTP agent; no workers yet.
    fn new(config: Arc<Config>, settings: Settings) -> Result<Shared> {
        let queue_dir = queue_dir(&config);
        std::fs::create_dir_all(&queue_dir)
            .with_context(|| format!("creating {}", queue_dir.display()))?;
        let agent = ureq::AgentBuilder::new().timeout(settings.timeout).build();
        let levels = settings.delays.iter().map(|_| Level::default()).collect();
        Ok(Shared {
            config,
            settings,
            queue_dir,
            levels,
            agent,
            seq: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
        })
    }

    /// Puts every item file of the queue folder back at the first level; deletes temporary
    /// and unreadable files, and items already past their deadline.
    fn requeue(&self) -> Result<()> {
        let dir = &self.queue_dir;
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        let mut items = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let item = (!name.contains(".tmp"))
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten()
                .and_then(|text| Item::parse(&name, &text));
            match item {
                Some(item) => items.push(item),
                None => {
                    eprintln!("warning: removing spurious queue file {}", path.display());
                    remove(&path);
                }
            }
        }
        items.sort_by_key(|item| item.start_ts);
        for item in items {
            if self.past_deadline(&item, Duration::ZERO) {
                self.drop_item(&item, "past its deadline");
            } else {
                self.push(0, Duration::ZERO, item);
            }
        }
        Ok(())
    }

    fn push(&self, level: usize, delay: Duration, item: Item) {
        let entry = Entry {
            due: Instant::now() + delay,
            seq: self.seq.fetch_add(1, atomic::Ordering::Relaxed),
            item,
        };
        let level = &self.levels[level];
        locked(&level.queue).push(Reverse(entry));
        level.ready.notify_one();
    }

    /// The next due item of `level`, waiting for one; `None` once stopping.
    fn next(&self, level: usize) -> Option<Item> {
        let level = &self.levels[level];
        let mut queue = locked(&level.queue);
        loop {
            if self.stopping.load(atomic::Ordering::SeqCst) {
                return None;
            }
            let now = Instant::now();
            queue = match queue.peek() {
                Some(Reverse(entry)) if entry.due <= now => {
                    return queue.pop().map(|Reverse(entry)| entry.item);
                }
                Some(Reverse(entry)) => {
                    let wait = entry.due - now;
                    level
                        .ready
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => level
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn work(&self, level: usize) {
        while let Some(item) = self.next(level) {
            self.attempt(level, item);
        }
    }

    fn attempt(&self, level: usize, item: Item) {
        let path = self.queue_dir.join(&item.id);
        let status = match self
            .agent
            .post(&self.settings.endpoint)
            .set("content-type", "text/plain")
            .send_string(&item.token)
        {
            Ok(response) => Ok(response.status()),
            Err(ureq::Error::Status(status, _)) => Ok(status),
            Err(err) => Err(err),
        };
        match status {
            Ok(200) => remove(&path),
            Ok(410) => {
                // The push service no longer knows this token: forget it.
                let forgotten = Account::new(&self.config, &item.addr).and_then(|account| {
                    crate::tokens::remove(&account, &item.token, crate::unix_now())
                });
                if let Err(err) = forgotten {
                    eprintln!(
                        "warning: removing an expired token of {}: {err:#}",
                        item.addr
                    );
                }
                remove(&path);
            }
            failed => {
                let why = match failed {
                    Ok(status) => format!("status {status}"),
                    Err(err) => err.to_string(),
                };
                eprintln!(
                    "warning: Notification request failed for {} at level {level}: {why}",
                    item.addr
                );
                self.retry(level + 1, item);
            }
        }
    }

    fn retry(&self, level: usize, item: Item) {
        let Some(delay) = self.settings.delays.get(level).copied() else {
            return self.drop_item(&item, "no retries left before the deadline");
        };
        if self.past_deadline(&item, delay) {
            return self.drop_item(&item, "past its deadline");
        }
        self.push(level, delay, item);
    }

    /// Whether a try of `item` after `delay` would come later than the deadline allows.
    fn past_deadline(&self, item: &Item, delay: Duration) -> bool {
        let age = crate::unix_now().saturating_sub(item.start_ts).max(0) as u64;
        Duration::from_secs(age) + delay > self.settings.deadline
    }

    /// Gives up on `item`: logs why and deletes its queue file.
    fn drop_item(&self, item: &Item, why: &str) {
        eprintln!("error: notification for {} dropped: {why}", item.addr);
        remove(&self.queue_dir.join(&item.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_items_parse_like_upstreams_files() {
        let item = Item::parse("abc", "a@x\n1712345678.25\ntok en\nwith newline").unwrap();
        assert_eq!(item.addr, "a@x");
        assert_eq!(item.start_ts, 1_712_345_678);
        assert_eq!(item.token, "tok en\nwith newline");
        for bad in [
            "",
            "a@x",
            "a@x\n12",
            "a@x\nnan?\ntok",
            "nobody\n12\ntok",
            "a@x\n12\n",
        ] {
            assert_eq!(Item::parse("abc", bad), None, "{bad:?}");
        }
    }

    /// A relay in a temporary folder with the notifier's state, and no workers.
    fn shared(dir: &Path) -> Shared {
        let ini = dir.join("chatmail.ini");
        let text = format!(
            "[params]\nmail_domain = chat.example.org\nmailboxes_dir = {}\n",
            dir.join("mail").display()
        );
        std::fs::write(&ini, text).unwrap();
        let config = Arc::new(Config::load(&ini).unwrap());
        Shared::new(config, Settings::new("http://127.0.0.1:9/notify")).unwrap()
    }

    #[test]
    fn queued_items_go_out_oldest_first_after_a_restart_and_in_order_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let now = crate::unix_now();
        // Written by an earlier run, listed in no particular order.
        for (id, age, token) in [
            ("b1", 30, "second"),
            ("a2", 10, "third"),
            ("c3", 60, "first"),
        ] {
            let text = format!("x@chat.example.org\n{}\n{token}", now - age);
            std::fs::write(shared.queue_dir.join(id), text).unwrap();
        }
        shared.requeue().unwrap();
        // Queued while running: after what was there, in the order given.
        for token in ["fourth", "fifth"] {
            let item = Item::parse("new", &format!("x@chat.example.org\n{now}\n{token}"));
            shared.push(0, Duration::ZERO, item.unwrap());
        }
        // Due later: last, although queued before nothing else.
        let later = Item::parse("later", &format!("x@chat.example.org\n{now}\nsixth"));
        shared.push(0, Duration::from_millis(50), later.unwrap());
        let order: Vec<String> = (0..6)
            .filter_map(|_| shared.next(0))
            .map(|i| i.token)
            .collect();
        assert_eq!(
            order,
            ["first", "second", "third", "fourth", "fifth", "sixth"]
        );
    }
}
