# Real-client checks for protocols/smtpd, run by clients_test.go:
#   python3 client.py MODE HOST PORT
# Prints "OK" or "CODE <n>" lines that the Go test compares.
import smtplib
import ssl
import sys

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl._create_unverified_context()
msg = ("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: python %s\r\n\r\n"
       "hello from smtplib\r\n.leading dot\r\n" % mode)


def login_tls():
    s = smtplib.SMTP(host, port, timeout=20)
    s.starttls(context=ctx)
    return s


try:
    if mode == "mx":
        with smtplib.SMTP(host, port, timeout=20) as s:
            s.sendmail("sender@remote.example", ["alice@example.org", "sales@example.org"], msg)
        print("OK")
    elif mode == "starttls-plain":
        with login_tls() as s:
            s.login("alice@example.org", "alice-pw")
            s.sendmail("alice@example.org", ["bob@example.org"], msg)
        print("OK")
    elif mode == "starttls-login":
        with login_tls() as s:
            s.ehlo()
            s.user, s.password = "alice@example.org", "alice-pw"
            s.auth("LOGIN", s.auth_login)
            s.sendmail("alice@example.org", ["bob@example.org"], msg)
        print("OK")
    elif mode == "ssl":
        with smtplib.SMTP_SSL(host, port, context=ctx, timeout=20) as s:
            s.login("alice@example.org", "alice-pw")
            s.sendmail("alice@example.org", ["bob@example.org"], msg)
        print("OK")
    elif mode == "badpw":
        for user in ("alice@example.org", "nobody@example.org"):
            with login_tls() as s:
                try:
                    s.login(user, "wrong-password")
                    print("LOGGED IN")
                except smtplib.SMTPAuthenticationError as e:
                    print("CODE", e.smtp_code, e.smtp_error.decode())
    elif mode == "spoof":
        with login_tls() as s:
            s.login("alice@example.org", "alice-pw")
            try:
                s.sendmail("bob@example.org", ["bob@example.org"], msg)
                print("SENT")
            except smtplib.SMTPSenderRefused as e:
                print("CODE", e.smtp_code)
    elif mode == "relay":
        with smtplib.SMTP(host, port, timeout=20) as s:
            try:
                s.sendmail("spammer@other.example", ["victim@other.example"], msg)
                print("SENT")
            except smtplib.SMTPRecipientsRefused as e:
                for code, _ in e.recipients.values():
                    print("CODE", code)
    elif mode == "noauth":
        with smtplib.SMTP(host, port, timeout=20) as s:
            try:
                s.sendmail("alice@example.org", ["bob@example.org"], msg)
                print("SENT")
            except smtplib.SMTPSenderRefused as e:
                print("CODE", e.smtp_code, e.smtp_error.decode())
    else:
        print("unknown mode", mode)
        sys.exit(2)
except Exception as e:  # report, the Go test fails on anything but the expected lines
    print("EXCEPTION", type(e).__name__, e)
    sys.exit(1)
