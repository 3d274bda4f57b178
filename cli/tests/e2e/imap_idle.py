"""Holds an IMAP IDLE connection open while the test changes the relay, then checks it is still
the same live connection.

Logs in (which creates the account), sends IDLE and prints "idling" once the server confirms.
Then waits for a line on stdin, ends the IDLE with DONE and prints "alive" if the server
completes it on the same connection.

usage: imap_idle.py RELAY_ADDRESS ADDRESS PASSWORD
"""

import imaplib
import ssl
import sys


def main():
    relay, addr, password = sys.argv[1:4]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    imap = imaplib.IMAP4_SSL(relay, 993, ssl_context=context, timeout=120)
    imap.login(addr, password)
    imap.select("INBOX")
    tag = imap._new_tag().decode()
    imap.send(f"{tag} IDLE\r\n".encode())
    line = imap.readline()
    assert line.startswith(b"+"), f"IDLE not accepted: {line!r}"
    print("idling", flush=True)
    sys.stdin.readline()
    imap.send(b"DONE\r\n")
    while True:
        line = imap.readline()
        assert line, "the server closed the connection"
        if line.startswith(tag.encode()):
            assert b" OK" in line, f"IDLE ended with {line!r}"
            break
    imap.logout()
    print("alive", flush=True)


if __name__ == "__main__":
    main()
