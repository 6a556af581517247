"""Senders: one small interface, `send(subscription, message)`, raising `SendError`
when the message did not get through (the worker then retries it later).

- `SmtpSender`: a plain-text UTF-8 email through the configured server, upgraded with
  STARTTLS (the certificate verified) before logging in.
- `WebhookSender`: POST of the message's JSON, signed: `X-Vaktpost-Timestamp` (Unix
  seconds) and `X-Vaktpost-Signature: sha256=HEX`, the HMAC-SHA256 with the
  subscription's secret of `TIMESTAMP.` followed by the raw body. The receiver checks
  the HMAC and refuses an old timestamp, so a recorded request cannot be replayed.
  `X-Vaktpost-Delivery` is the outbox row id: the same on a retry, for deduplication.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import httpx

from vaktpost.broker.config import SmtpSection
from vaktpost.broker.notify.message import Message
from vaktpost.broker.notify.subscriptions import Subscription
from vaktpost.broker.store import utcnow

SIGNATURE_HEADER = "X-Vaktpost-Signature"
TIMESTAMP_HEADER = "X-Vaktpost-Timestamp"
DELIVERY_HEADER = "X-Vaktpost-Delivery"


class SendError(Exception):
    """The message was not delivered; the text (one line) becomes the row's last_error.
    `destination_down`: the server failed, not this message (the other messages to it wait too)."""

    def __init__(self, message: str, *, destination_down: bool = True) -> None:
        super().__init__(message)
        self.destination_down = destination_down


class Sender(Protocol):
    def send(self, subscription: Subscription, message: Message, delivery_id: int) -> None: ...


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of X-Vaktpost-Signature for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:500]


class SmtpSender:
    def __init__(self, settings: SmtpSection, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self._password = settings.password()  # read at start: a missing file is a start error

    def _email(self, to: str, message: Message) -> EmailMessage:
        m = EmailMessage()
        m["From"] = self.settings.from_address
        m["To"] = to
        m["Subject"] = message.subject
        m["Date"] = format_datetime(self.clock())
        m["Message-ID"] = make_msgid(domain=self.settings.from_address.rpartition("@")[2])
        m["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        m.set_content(message.text)
        return m

    def send(self, subscription: Subscription, message: Message, delivery_id: int) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context(
                        cafile=str(s.ca_file) if s.ca_file else None))
                if s.username:
                    smtp.login(s.username, self._password or "")
                smtp.send_message(self._email(subscription.target, message))
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as e:  # this message, not the server
            raise SendError(_one_line(e), destination_down=False) from None
        except (OSError, smtplib.SMTPException) as e:  # refused, timed out, TLS, auth, rejected recipient
            raise SendError(_one_line(e)) from None


class WebhookSender:
    def __init__(self, timeout: float, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        # No redirects: a signed request goes where the subscription says, nowhere else.
        self.client = httpx.Client(timeout=timeout, follow_redirects=False,
                                   headers={"User-Agent": "vaktpost-notify"})

    def send(self, subscription: Subscription, message: Message, delivery_id: int) -> None:
        body = json.dumps(message.data, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self.clock().timestamp()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(subscription.secret or "", timestamp, body),
                   DELIVERY_HEADER: str(delivery_id)}
        try:
            response = self.client.post(subscription.target, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise SendError(_one_line(e)) from None
        if not response.is_success:
            raise SendError(f"HTTP {response.status_code} from the webhook")

    def close(self) -> None:
        self.client.close()
