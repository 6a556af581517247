"""Privacy: masked areas are blanked on every frame before any analysis sees it
(`masks.PrivacyMasker`); the same masks are filled again in every snapshot."""
