//! Incoming mode without DKIM: encryption, per-recipient cleartext opt-in, mailer-daemon reports.

use crate::common::*;

const REMOTE: &str = "remote@example.net";
const STRICT: &str = "strict@example.org";
const LAX: &str = "lax@example.org";

fn start(sink: &Sink) -> Filtermail {
    let fm = Filtermail::start("incoming", sink.port, "", &[("FILTERMAIL_SKIP_DKIM", "1")]);
    fm.create_account(STRICT, true);
    fm.create_account(LAX, false);
    fm
}

fn report(from: &str, to: &str, auto_submitted: bool) -> String {
    let mut head = headers(from, to, "Undelivered Mail Returned to Sender");
    if auto_submitted {
        head.push_str("Auto-Submitted: auto-replied\r\n");
    }
    multipart(
        &head,
        "multipart/report; report-type=delivery-status",
        &[
            ("Content-Type: text/plain", "This is the mail system."),
            (
                "Content-Type: message/delivery-status",
                "Reporting-MTA: dns; mx.example.net",
            ),
        ],
    )
}

#[test]
fn encrypted_mail_passes_and_is_reinjected_as_bounce() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink);
    assert!(fm.wait_log("DKIM verification DISABLED"), "{}", fm.logs());
    // The envelope sender need not match From: on incoming mail.
    let message = encrypted_message(REMOTE, STRICT, 1000);
    send(
        fm.smtp_port,
        "srs0=x=y@forwarder.example",
        &[STRICT],
        message.as_bytes(),
    )
    .map_err(|e| format!("{e:?}"))?;
    // Incoming mail may carry a Version: armor header.
    let armored = armored_encrypted(300).replacen(
        "-----BEGIN PGP MESSAGE-----\r\n",
        "-----BEGIN PGP MESSAGE-----\r\nVersion: Other 1.0\r\n",
        1,
    );
    let versioned = encrypted_mime(&headers(REMOTE, STRICT, "[...]"), &armored);
    send(fm.smtp_port, REMOTE, &[STRICT], versioned.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let got = sink.wait_for(2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].mail_from, "");
    assert_eq!(got[0].rcpts, [STRICT]);
    assert_relayed(&got[0], &message);
    assert!(fm.wait_log("Incoming: Filtering encrypted mail."));
    Ok(())
}

#[test]
fn cleartext_only_when_every_recipient_accepts_it() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink);
    let plain = plain_message(REMOTE, LAX);
    send(fm.smtp_port, REMOTE, &[LAX], plain.as_bytes()).map_err(|e| format!("{e:?}"))?;
    assert_eq!(sink.wait_for(1).len(), 1);
    assert!(fm.wait_log("Incoming: Filtering unencrypted mail."));
    // Unknown accounts have no folder and thus no flag: upstream lets those pass. An address
    // that cannot name a folder counts as refusing cleartext.
    let cases: [(&[&str], _); 4] = [
        (&[STRICT], Err(523)),
        (&[LAX, STRICT], Err(523)),
        (&["nobody@example.org", LAX], Ok(())),
        (&["a/b@example.org"], Err(523)),
    ];
    for (rcpts, want) in cases {
        let result = send(fm.smtp_port, REMOTE, rcpts, plain.as_bytes());
        assert_eq!(result.map_err(|e| e.0), want, "{rcpts:?}");
    }
    assert!(fm.logs().contains("Rejected unencrypted mail"));
    Ok(())
}

#[test]
fn mailer_daemon_reports_pass_but_not_lookalikes() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink);
    let bounce = report("MAILER-DAEMON@example.net", STRICT, true);
    send(
        fm.smtp_port,
        "postmaster@example.net",
        &[STRICT],
        bounce.as_bytes(),
    )
    .map_err(|e| format!("{e:?}"))?;
    assert_eq!(sink.wait_for(1).len(), 1);
    assert!(
        fm.wait_log("Incoming: Filtering mailer-daemon message from mailer-daemon@example.net")
    );

    let not_a_report = format!(
        "{}Auto-Submitted: auto-replied\r\nContent-Type: text/plain\r\n\r\nYour mail failed.\r\n",
        headers("mailer-daemon@example.net", STRICT, "failure")
    );
    let mdn = multipart(
        &headers(REMOTE, STRICT, "Receipt Notification"),
        "multipart/report; report-type=disposition-notification",
        &[
            (
                "Content-Type: text/plain",
                "This is a receipt notification.",
            ),
            (
                "Content-Type: message/disposition-notification",
                "Disposition: manual-action/MDN-sent-automatically; displayed",
            ),
        ],
    );
    let cases = [
        ("mailer-daemon without report", not_a_report),
        (
            "report without Auto-Submitted",
            report("mailer-daemon@example.net", STRICT, false),
        ),
        ("report from a normal user", report(REMOTE, STRICT, true)),
        ("MDN", mdn),
    ];
    for (name, message) in cases {
        let result = send(fm.smtp_port, REMOTE, &[STRICT], message.as_bytes());
        assert_eq!(result.map_err(|e| e.0), Err(523), "{name}");
    }
    assert_eq!(sink.count(), 1);
    Ok(())
}

#[test]
fn securejoin_passes_incoming() -> TestResult {
    let sink = Sink::start();
    let fm = start(&sink);
    let message = multipart(
        &format!(
            "{}Secure-Join: vc-request\r\n",
            headers(REMOTE, STRICT, "Message from remote")
        ),
        "multipart/mixed",
        &[("Content-Type: text/plain", "Secure-Join: vc-request")],
    );
    send(fm.smtp_port, REMOTE, &[STRICT], message.as_bytes()).map_err(|e| format!("{e:?}"))?;
    assert_eq!(sink.wait_for(1).len(), 1);
    Ok(())
}
