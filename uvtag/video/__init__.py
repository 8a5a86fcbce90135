"""Reading videos and turning frames into the official test-time clips."""
