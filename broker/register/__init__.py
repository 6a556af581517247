"""The camera register (docs/central.md, "Camera register"): per place its cameras,
the purpose and responsible unit from the places registry, and from each node's
`config` message what is masked, when each zone is armed, the snapshot policy and
the retention. `rows` gathers it, `words` puts it in words (any language) and CSV;
the inbox's `register_pages` shows it and renders the PDF."""
