"""preference step shapes of the run driver."""
