"""Member firms: sign-up, approval by their chamber, colleagues."""
