"""Events: observations become events with a start, updates and an end
(`lifecycle.Lifecycle`), built in one place (`factory`)."""
