"""Stage 3: resolved actions become override builders: arrays for masks and values, one generic forward."""
