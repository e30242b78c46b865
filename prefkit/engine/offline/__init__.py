"""offline step shapes of the run driver."""
