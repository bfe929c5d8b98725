"""Medication suitability (PATHWAY.md §4 with §8): a module per option, a named unit per rule."""
