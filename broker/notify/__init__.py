"""Notifications of new incidents to facilities staff: subscriptions, the outbox, the
messages, the senders (SMTP, webhook) and the worker that runs them (docs/inbox.md,
"Notifications")."""
