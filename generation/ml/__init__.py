"""Generator backends as plain Python (no Django): each stages a product photo into a scene."""
