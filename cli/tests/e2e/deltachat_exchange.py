"""End-to-end check of deployed relays with the real Delta Chat core.

Two new accounts log in (which creates them on the relay), set up end-to-end encryption
with a Secure-Join QR code, exchange a message in each direction, and a cleartext message
sent by plain SMTP submission is refused, and the relay's IMAP METADATA names the current app
versions. Prints one JSON line with the measured round trip and what was checked.

usage: deltachat_exchange.py RELAY_ADDRESS MAIL_DOMAIN ACCOUNTS_DIR
       deltachat_exchange.py --federation RELAY_A DOMAIN_A RELAY_B DOMAIN_B ACCOUNTS_DIR

With --federation, alice has her account on relay A and bob his on relay B; after the
Secure-Join the script reads commands from standard input, one a line, and answers each
with one JSON line (an error ends the script with a traceback):
  exchange          alice and bob exchange a message each way; the round trip
  send TEXT         alice sends TEXT to bob
  receive TEXT      bob waits for TEXT; whether it was end-to-end encrypted
  cleartext         plain SMTP submission of cleartext from alice to bob at relay A: the reply
  request TO        alice submits a Secure-Join request (passes the filter unencrypted) to TO
  unsigned smtp     a Secure-Join request from alice's address without DKIM signature, given
                    to relay B on port 25: the reply
  unsigned https    the same, posted to relay B's https://DOMAIN_B/mxdeliv: the reply
"""

import imaplib
import json
import secrets
import smtplib
import ssl
import string
import sys
import time
import urllib.error
import urllib.request
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


def joined_accounts(dc, relays):
    """An account on each of the (relay address, mail domain) pairs, joined by Secure-Join
    (alice scans bob's invitation; afterwards both have each other's keys); returns the
    accounts, their (address, password) logins and alice's chat with bob."""
    accounts = []
    logins = []
    for relay, mail_domain in relays:
        addr, password = credentials(mail_domain)
        account = dc.add_account()
        account.add_transport_from_qr(login_qr(addr, password, relay))
        account.bring_online()
        accounts.append(account)
        logins.append((addr, password))
    alice, bob = accounts
    chat = alice.secure_join(bob.get_qr_code())
    alice.wait_for_securejoin_joiner_success()
    bob.wait_for_securejoin_inviter_success()
    return accounts, logins, chat


def exchange(alice, bob, chat):
    """A message from alice to bob and bob's answer, both end-to-end encrypted; the round
    trip in seconds."""
    start = time.monotonic()
    chat.send_text("ping from alice")
    received = wait_for_text(bob, "ping from alice")
    assert received.show_padlock, "alice's message was not end-to-end encrypted"
    bob_chat = bob.get_chat_by_id(received.chat_id)
    bob_chat.send_text("pong from bob")
    answer = wait_for_text(alice, "pong from bob")
    round_trip = time.monotonic() - start
    assert answer.show_padlock, "bob's answer was not end-to-end encrypted"
    return round(round_trip, 3)


def main():
    if sys.argv[1] == "--federation":
        federation(*sys.argv[2:7])
        return
    relay, mail_domain, accounts_dir = sys.argv[1:4]
    with Rpc(accounts_dir=accounts_dir) as rpc:
        (alice, bob), logins, chat = joined_accounts(
            DeltaChat(rpc), [(relay, mail_domain), (relay, mail_domain)]
        )
        round_trip = exchange(alice, bob, chat)
        refused = cleartext_is_refused(relay, logins[0], logins[1][0])
        clients = [client["clientId"] for client in app_versions(relay, logins[0])["clients"]]
        print(
            json.dumps(
                {
                    "round_trip_seconds": round_trip,
                    "cleartext_refused": refused,
                    "appversions_clients": clients,
                }
            )
        )


def federation(relay_a, domain_a, relay_b, domain_b, accounts_dir):
    """Alice on relay A, bob on relay B; the commands of the module's help from stdin."""
    with Rpc(accounts_dir=accounts_dir) as rpc:
        (alice, bob), logins, chat = joined_accounts(
            DeltaChat(rpc), [(relay_a, domain_a), (relay_b, domain_b)]
        )
        print(json.dumps({"alice": logins[0][0], "bob": logins[1][0]}), flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "exchange":
                answer = {"round_trip_seconds": exchange(alice, bob, chat)}
            elif command == "send":
                chat.send_text(arg)
                answer = {"sent": arg}
            elif command == "receive":
                received = wait_for_text(bob, arg, timeout=120)
                answer = {"received": arg, "encrypted": received.show_padlock}
            elif command == "cleartext":
                answer = {"refused": cleartext_is_refused(relay_a, logins[0], logins[1][0])}
            elif command == "request":
                submit(relay_a, logins[0], securejoin_request(logins[0][0], arg))
                answer = {"submitted": arg}
            elif command == "unsigned" and arg == "smtp":
                answer = {"refused": unsigned_is_refused(relay_b, logins[0][0], logins[1][0])}
            elif command == "unsigned" and arg == "https":
                answer = mxdeliv(relay_b, domain_b, securejoin_request(logins[0][0], logins[1][0]))
            else:
                raise ValueError(f"unknown command {command!r}")
            print(json.dumps(answer), flush=True)


def unverified_tls():
    """The test relays' certificates are self-signed or from a test CA this machine does not
    trust."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def securejoin_request(from_addr, to_addr):
    """A Secure-Join request, which the relays let through unencrypted."""
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = to_addr
    message["Subject"] = "Message from " + from_addr
    message["Secure-Join"] = "vc-request"
    message.set_content("Secure-Join: vc-request\n")
    message.make_mixed()
    return message


def submit(relay, login, message):
    """Submits `message` with `login` on the relay's port 587."""
    addr, password = login
    with smtplib.SMTP(relay, 587, timeout=30) as smtp:
        smtp.starttls(context=unverified_tls())
        smtp.login(addr, password)
        smtp.send_message(message)


def unsigned_is_refused(relay, from_addr, to_addr):
    """A message from `from_addr` without its domain's DKIM signature, offered to the relay's
    port 25 as another relay would: the relay must refuse it."""
    with smtplib.SMTP(relay, 25, timeout=30) as smtp:
        smtp.starttls(context=unverified_tls())
        try:
            smtp.send_message(securejoin_request(from_addr, to_addr))
        except smtplib.SMTPDataError as err:
            return f"{err.smtp_code} {err.smtp_error.decode(errors='replace')}"
    raise AssertionError("the relay accepted a message without a DKIM signature")


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


def mxdeliv(relay, domain, message):
    """Posts `message` to the relay's /mxdeliv as another relay's transport does; the HTTP
    status and the SMTP reply in the body."""
    request = urllib.request.Request(
        f"https://{relay}/mxdeliv",
        data=message.as_bytes(),
        method="POST",
        headers={"Host": domain, "X-Mail-From": message["From"], "X-Mail-To": message["To"]},
    )
    try:
        with urllib.request.urlopen(request, context=unverified_tls(), timeout=30) as response:
            return {"status": response.status, "reply": response.read().decode()}
    except urllib.error.HTTPError as err:
        return {"status": err.code, "reply": err.read().decode()}


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
