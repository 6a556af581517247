"""Vaktpost camera node: frame → masks → analysers → events → outbox → MQTT."""
