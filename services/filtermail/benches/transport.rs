//! Benchmark of the transport: messages per second from LMTP to a local receiving relay (a real
//! `filtermail incoming` behind the test TLS terminators), over the HTTPS and the SMTP path,
//! for 1 KB and 1 MB encrypted messages, to one destination and to four; and the transport's
//! peak memory while 100 deliveries to 100 destinations are in flight. Run with
//! `cargo bench -p filtermail --bench transport`; prints a Markdown table.

#[allow(dead_code)]
#[path = "../tests/blackbox/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/blackbox/testbed.rs"]
mod testbed;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Filtermail, Sink, encrypted_message};
use testbed::{Cert, Testbed, lmtp, lmtp_until_data};

const FROM: &str = "alice@example.org";
/// LMTP clients sending in parallel, as Postfix's `lmtp` processes do.
const CLIENTS: usize = 4;
/// Deliveries held in flight for the memory figure.
const IN_FLIGHT: usize = 100;

fn main() {
    let bed = Testbed::new(40);
    let https = bed.relay(2, &Cert::Trusted(&["mx.https.test"]), true, true);
    let smtp = bed.relay(3, &Cert::Trusted(&["mx.smtp.test"]), false, true);
    bed.a("mx.https.test", 2);
    bed.a("mx.smtp.test", 3);
    for i in 0..CLIENTS {
        bed.mx(&format!("d{i}.https.test"), 10, "mx.https.test");
        bed.mx(&format!("d{i}.smtp.test"), 10, "mx.smtp.test");
    }
    // A host that takes connections and never answers: deliveries to it stay in flight.
    let _hanging =
        std::net::TcpListener::bind((bed.ip(4), bed.https_port)).expect("bind the stuck host");
    for i in 0..2 * IN_FLIGHT {
        bed.a(&format!("stuck{i}.test"), 4);
    }
    let transport = bed.transport();
    println!(
        "| measurement | result |\n|---|---|\n| transport RSS at start | {} KB |",
        transport.vm_kb("VmRSS")
    );
    for (label, plain_size, count) in [("1 KB", 300, 2000), ("1 MB", 750_000, 100)] {
        let message = Arc::new(encrypted_message(FROM, "bob@d0.https.test", plain_size));
        for (path, sink, domain) in [
            ("HTTPS", &https.sink, "https.test"),
            ("SMTP", &smtp.sink, "smtp.test"),
        ] {
            for destinations in [1, CLIENTS] {
                let rate = throughput(&transport, sink, &message, count, domain, destinations);
                println!(
                    "| {path}, {label} messages ({} bytes), {CLIENTS} LMTP clients, {destinations} destination(s), {count} messages | {rate:.0} messages/s ({:.1} MB/s) |",
                    message.len(),
                    rate * message.len() as f64 / 1e6
                );
            }
        }
    }
    for (round, (label, plain_size)) in [("1 KB", 300), ("1 MB", 750_000)].into_iter().enumerate() {
        let message = encrypted_message(FROM, "bob@stuck0.test", plain_size);
        // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
        std::fs::write(format!("/proc/{}/clear_refs", transport.child.id()), "5")
            .expect("reset peak RSS");
        let before = transport.vm_kb("VmRSS");
        let held = in_flight(&transport, &message, round * IN_FLIGHT);
        println!(
            "| peak RSS with {IN_FLIGHT} deliveries of a {label} message in flight (100 destinations) | {} KB (RSS before: {before} KB) |",
            transport.vm_kb("VmHWM")
        );
        drop(held);
    }
}

/// Sends `count` messages from [`CLIENTS`] threads to `destinations` domains under `domain`
/// and returns messages per second.
fn throughput(
    transport: &Filtermail,
    sink: &Sink,
    message: &Arc<String>,
    count: usize,
    domain: &str,
    destinations: usize,
) -> f64 {
    let before = sink.count();
    let start = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let message = message.clone();
            let port = transport.smtp_port;
            let rcpt = format!("bob@d{}.{domain}", client % destinations);
            thread::spawn(move || {
                for _ in 0..count / CLIENTS {
                    let replies = lmtp(port, FROM, &[&rcpt], &message);
                    assert!(replies[0].starts_with("250 OK"), "{replies:?}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("client thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = sink.wait_for(before + count).len() - before;
    assert_eq!(delivered, count, "not every message was delivered");
    count as f64 / elapsed
}

/// Starts [`IN_FLIGHT`] deliveries to the stuck host, one per destination (`stuck<first>.test`
/// and on), and returns their LMTP sessions (replies come only when HTTPS times out).
fn in_flight(transport: &Filtermail, message: &str, first: usize) -> Vec<common::RawClient> {
    let barrier = Arc::new(Barrier::new(IN_FLIGHT));
    let handles: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let barrier = barrier.clone();
            let message = message.to_owned();
            let port = transport.smtp_port;
            thread::spawn(move || {
                barrier.wait();
                let rcpt = format!("bob@stuck{}.test", first + i);
                lmtp_until_data(port, FROM, &[&rcpt], &message)
            })
        })
        .collect();
    let held: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    // Let every worker take its message and start connecting.
    thread::sleep(Duration::from_secs(2));
    held
}
