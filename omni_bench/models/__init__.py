"""Models: cards that describe them (no imports), and calculators built from the cards on demand."""
