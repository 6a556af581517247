"""Central ingest: parse, batch and acknowledge what nodes publish."""
