"""End-to-end check of a deployed relay with the real Delta Chat core.

Two new accounts log in (which creates them on the relay), set up end-to-end encryption
with a Secure-Join QR code, exchange a message in each direction, and a cleartext message
sent by plain SMTP submission is refused, and the relay's IMAP METADATA names the current app
versions. Prints one JSON line with the measured round trip and what was checked.

usage: deltachat_exchange.py RELAY_ADDRESS MAIL_DOMAIN ACCOUNTS_DIR
"""

import imaplib
import json
import secrets
import smtplib
import ssl
import string
import sys
import time
from email.message import EmailMessage

from deltachat_rpc_client import DeltaChat, Rpc


def credentials(mail_domain):
    """A fresh address and password that the relay accepts for a new account."""
    alphabet = string.ascii_lowercase + string.digits
    user = "".join(secrets.choice(alphabet) for _ in range(9))
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    return f"{user}@{mail_domain}", password


def login_qr(addr, password, relay):
    """A DCLOGIN code pointing the client at the relay's address, accepting its certificate."""
    return f"dclogin:{addr}?p={password}&v=1&ih={relay}&ip=993&sh={relay}&sp=465&ic=3&sc=3"


def wait_for_text(account, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = account.wait_for_incoming_msg()
        snapshot = msg.get_snapshot()
        if snapshot.text == text:
            return snapshot
    raise TimeoutError(f"no message {text!r} within {timeout} s")


def main():
    relay, mail_domain, accounts_dir = sys.argv[1:4]
    with Rpc(accounts_dir=accounts_dir) as rpc:
        dc = DeltaChat(rpc)
        accounts = []
        logins = []
        for _ in range(2):
            addr, password = credentials(mail_domain)
            account = dc.add_account()
            account.add_transport_from_qr(login_qr(addr, password, relay))
            account.bring_online()
            accounts.append(account)
            logins.append((addr, password))
        alice, bob = accounts

        # Secure-Join: alice scans bob's invitation; afterwards both have each other's keys.
        chat = alice.secure_join(bob.get_qr_code())
        alice.wait_for_securejoin_joiner_success()
        bob.wait_for_securejoin_inviter_success()

        start = time.monotonic()
        chat.send_text("ping from alice")
        received = wait_for_text(bob, "ping from alice")
        assert received.show_padlock, "alice's message was not end-to-end encrypted"
        bob_chat = bob.get_chat_by_id(received.chat_id)
        bob_chat.send_text("pong from bob")
        answer = wait_for_text(alice, "pong from bob")
        round_trip = time.monotonic() - start
        assert answer.show_padlock, "bob's answer was not end-to-end encrypted"

        refused = cleartext_is_refused(relay, logins[0], logins[1][0])
        clients = [client["clientId"] for client in app_versions(relay, logins[0])["clients"]]
        print(
            json.dumps(
                {
                    "round_trip_seconds": round(round_trip, 3),
                    "cleartext_refused": refused,
                    "appversions_clients": clients,
                }
            )
        )


def unverified_tls():
    """Test relays have self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def cleartext_is_refused(relay, login, to_addr):
    """Plain SMTP submission of an unencrypted message must be rejected by filtermail."""
    addr, password = login
    message = EmailMessage()
    message["From"] = addr
    message["To"] = to_addr
    message["Subject"] = "cleartext"
    message.set_content("this is not encrypted\n")
    with smtplib.SMTP(relay, 587, timeout=30) as smtp:
        smtp.starttls(context=unverified_tls())
        smtp.login(addr, password)
        try:
            smtp.send_message(message)
        except smtplib.SMTPDataError as err:
            return f"{err.smtp_code} {err.smtp_error.decode(errors='replace')}"
    raise AssertionError("the relay accepted a cleartext message")


def app_versions(relay, login):
    """The app-versions document Delta Chat reads from the relay's IMAP METADATA."""
    addr, password = login
    with imaplib.IMAP4_SSL(relay, 993, ssl_context=unverified_tls(), timeout=30) as imap:
        imap.login(addr, password)
        status, reply = imap.xatom("GETMETADATA", '""', "/shared/vendor/deltachat/appversions")
        assert status == "OK", f"GETMETADATA: {status} {reply!r}"
        _, data = imap.response("METADATA")
    # The value comes as an IMAP literal: (b'"" (/shared/... {N}', b'<json>').
    for item in data:
        if isinstance(item, tuple):
            return json.loads(item[1])
    raise AssertionError(f"no app versions in the METADATA reply {data!r}")


if __name__ == "__main__":
    main()
