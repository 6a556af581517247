"""Incidents: events grouped into what staff triage (docs/central.md, "Incidents").

`kinds` (types, priorities, states, outcomes), `tables` (SQL tables on the place
log's metadata), `grouping` (the consumer's side: events, status and heartbeats
into incidents), `service` (list, read and change incidents; the audit log)."""
