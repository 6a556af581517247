"""Delivery: the durable SQLite `outbox` holds every message until the central
consumer acknowledges it; `transport.Publisher` drains it to MQTT v5."""
