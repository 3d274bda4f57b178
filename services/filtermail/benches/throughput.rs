//! Benchmark of the outgoing filter: messages per second for 10 KB and 1 MB encrypted messages
//! (one SMTP connection per message, as Postfix's proxy does), and the filter's peak memory
//! while 100 connections each hold a message in flight. Run with
//! `cargo bench -p filtermail --bench throughput`; prints a Markdown table.

#[allow(dead_code)]
#[path = "../tests/blackbox/common.rs"]
mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use common::{Filtermail, RawClient, Sink, encrypted_message, send};

const FROM: &str = "alice@example.org";
const TO: &str = "bob@example.net";
/// Client threads sending in parallel during the throughput runs.
const CLIENTS: usize = 4;

fn main() {
    let sink = Sink::start();
    let fm = Filtermail::start(
        "outgoing",
        sink.port,
        "max_user_send_per_minute = 100000000\nmax_user_send_burst_size = 100000000",
        &[],
    );
    println!(
        "| measurement | result |\n|---|---|\n| filter RSS at start | {} KB |",
        fm.vm_kb("VmRSS")
    );
    for (label, plain_size, count) in [("10 KB", 7_300, 4000), ("1 MB", 750_000, 200)] {
        let message = Arc::new(encrypted_message(FROM, TO, plain_size));
        let rate = throughput(&fm, &sink, &message, count);
        println!(
            "| outgoing, {label} messages ({} bytes), {CLIENTS} parallel clients, {count} messages | {rate:.0} messages/s ({:.1} MB/s) |",
            message.len(),
            rate * message.len() as f64 / 1e6
        );
    }
    for (label, plain_size) in [("10 KB", 7_300), ("1 MB", 750_000)] {
        let message = encrypted_message(FROM, TO, plain_size);
        // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
        std::fs::write(format!("/proc/{}/clear_refs", fm.child.id()), "5").expect("reset peak RSS");
        let before = fm.vm_kb("VmRSS");
        concurrent(&fm, &message, 100);
        println!(
            "| peak RSS while 100 concurrent connections each send a {label} message | {} KB (RSS before: {before} KB) |",
            fm.vm_kb("VmHWM")
        );
    }
}

/// Sends `count` messages from `CLIENTS` threads and returns messages per second.
fn throughput(fm: &Filtermail, sink: &Sink, message: &Arc<String>, count: usize) -> f64 {
    let before = sink.count();
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let message = message.clone();
            let port = fm.smtp_port;
            thread::spawn(move || {
                for _ in 0..count / CLIENTS {
                    if let Err(err) = send(port, FROM, &[TO], message.as_bytes()) {
                        eprintln!("send failed: {err:?}");
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = sink.wait_for(before + count).len() - before;
    assert_eq!(delivered, count, "not every message was delivered");
    count as f64 / elapsed
}

/// Opens `n` connections, sends each a whole message but the final dot, then ends them all.
fn concurrent(fm: &Filtermail, message: &str, n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            let message = message.to_owned();
            let port = fm.smtp_port;
            thread::spawn(move || {
                let (mut c, _) = RawClient::connect(port);
                c.cmd("EHLO bench");
                c.cmd(&format!("MAIL FROM:<{FROM}>"));
                c.cmd(&format!("RCPT TO:<{TO}>"));
                c.cmd("DATA");
                c.write(message.as_bytes());
                barrier.wait();
                let reply = c.cmd(".");
                assert_eq!(reply, "250 OK");
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}
