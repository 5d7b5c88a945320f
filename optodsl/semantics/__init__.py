"""Stage 2: a syntax tree plus settings become validated experiments (settings + resolved actions)."""
