"""Stage 5: analyses that read runs or stand beside them (the toy model of Figure 5a)."""
