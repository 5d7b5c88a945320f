"""A trained run's network written for other tools (`opto export`); each target in its own module."""
