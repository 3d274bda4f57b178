"""How soon a deployed relay tells an IMAP IDLE client about a new message.

A recipient logs in over IMAP (993, which creates the account), selects INBOX and IDLEs; a
sender submits COUNT OpenPGP-encrypted messages (a real `gpg --symmetric` payload, so
filtermail passes them as encrypted) on port 465, one at a time. Prints one JSON line: for
each message its Message-ID and the wall-clock times (Unix seconds) when its submission
began, when it was accepted (the reply to DATA) and when the recipient's `* N EXISTS` came;
how many messages the recipient's INBOX held before the first one; and the recipient's
login. `xtask::latency` reads it.

usage: idle_latency.py RELAY_ADDRESS MAIL_DOMAIN COUNT [RECIPIENT PASSWORD]
"""

import json
import secrets
import smtplib
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time


def tls_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def credentials(mail_domain):
    """A fresh address and password that the relay accepts for a new account."""
    alphabet = string.ascii_lowercase + string.digits
    user = "".join(secrets.choice(alphabet) for _ in range(9))
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    return f"{user}@{mail_domain}", password


def encrypted_payload():
    """An armored OpenPGP message (SKESK + SEIPD packets) made by gpg in a home of its own."""
    with tempfile.TemporaryDirectory() as home:
        return subprocess.run(
            ["gpg", "--batch", "--quiet", "--homedir", home, "--symmetric", "--armor",
             "--no-emit-version", "--passphrase", "latency", "--pinentry-mode", "loopback"],
            input=b"a chat message\n", capture_output=True, check=True,
        ).stdout.decode()


class Idler:
    """An IMAP connection idling on INBOX; records when each `* N EXISTS` arrives."""

    def __init__(self, relay, addr, password):
        raw = socket.create_connection((relay, 993), timeout=30)
        self.sock = tls_context().wrap_socket(raw)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # greeting
        self.command(f'a LOGIN "{addr}" "{password}"')
        self.exists = int(self.command("b SELECT INBOX", want="EXISTS"))
        self.sock.sendall(b"c IDLE\r\n")
        line = self.file.readline()
        if not line.startswith(b"+"):
            raise RuntimeError(f"IDLE refused: {line!r}")
        self.sock.settimeout(None)
        self.arrivals = []
        self.changed = threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()

    @staticmethod
    def log_in(relay, addr, password):
        """Logs in once over IMAP, which creates the account."""
        with socket.create_connection((relay, 993), timeout=30) as raw:
            with tls_context().wrap_socket(raw) as sock:
                file = sock.makefile("rb")
                file.readline()
                sock.sendall(f'a LOGIN "{addr}" "{password}"\r\n'.encode())
                reply = file.readline()
                if not reply.startswith(b"a OK"):
                    raise RuntimeError(f"LOGIN {addr} failed: {reply!r}")

    def command(self, line, want=None):
        tag = line.split()[0].encode()
        self.sock.sendall(line.encode() + b"\r\n")
        value = None
        while True:
            reply = self.file.readline()
            if not reply:
                raise RuntimeError(f"connection closed after {line.split()[1]}")
            words = reply.split()
            if want and len(words) >= 3 and words[0] == b"*" and words[2] == want.encode():
                value = words[1].decode()
            if words and words[0] == tag:
                if words[1] != b"OK":
                    raise RuntimeError(f"{line.split()[1]} failed: {reply!r}")
                return value

    def read(self):
        for line in self.file:
            words = line.split()
            if len(words) == 3 and words[0] == b"*" and words[2] == b"EXISTS":
                with self.changed:
                    self.arrivals.append((int(words[1]), time.time()))
                    self.changed.notify_all()

    def wait_for(self, count, timeout=30):
        """When the mailbox first held `count` messages."""
        deadline = time.time() + timeout
        with self.changed:
            while True:
                for exists, at in self.arrivals:
                    if exists >= count:
                        return at
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no EXISTS {count} within {timeout} s")
                self.changed.wait(left)


def message(sender, recipient, payload, message_id):
    """An OpenPGP/MIME message (RFC 3156) as Delta Chat sends one."""
    boundary = secrets.token_hex(12)
    return (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        "Subject: [...]\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "Chat-Version: 1.0\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
        f'boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: application/pgp-encrypted\r\n"
        "\r\n"
        "Version: 1\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        "Content-Disposition: inline\r\n"
        "\r\n"
        + payload.replace("\n", "\r\n")
        + f"\r\n--{boundary}--\r\n"
    )


def main():
    relay, mail_domain, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 5:
        recipient, recipient_password = sys.argv[4], sys.argv[5]
    else:
        recipient, recipient_password = credentials(mail_domain)
    sender, sender_password = credentials(mail_domain)
    payload = encrypted_payload()
    Idler.log_in(relay, sender, sender_password)
    idler = Idler(relay, recipient, recipient_password)
    before = idler.exists
    domain = sender.split("@")[1]
    messages = []
    with smtplib.SMTP_SSL(relay, 465, context=tls_context(), timeout=30) as smtp:
        smtp.login(sender, sender_password)
        for number in range(count):
            message_id = f"latency{number}.{secrets.token_hex(6)}@{domain}"
            sent = time.time()
            smtp.sendmail(sender, [recipient], message(sender, recipient, payload, message_id))
            accepted = time.time()
            seen = idler.wait_for(before + number + 1)
            messages.append({"id": message_id, "sent": sent, "accepted": accepted, "seen": seen})
    print(json.dumps({
        "messages": messages,
        "inbox_before": before,
        "recipient": [recipient, recipient_password],
    }))


if __name__ == "__main__":
    main()
