"""Measures taken at places and their follow-up, the situational report (PDF) and the
exports (CSV, XLSX): docs/inbox.md, "Measures", "Situational report", "Exports"."""
