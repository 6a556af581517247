"""The central host: Mosquitto configuration, the event consumer and the place log."""
