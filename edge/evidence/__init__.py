"""Evidence: anonymised snapshots (`anonymise` fills people, faces and masks solid;
`snapshot` encodes a metadata-free JPEG). Fails closed: no anonymiser, no image."""
