"""Daily and weekly email digests, saved-search alerts and reminders."""
