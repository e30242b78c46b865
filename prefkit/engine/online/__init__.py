"""online step shapes of the run driver."""
