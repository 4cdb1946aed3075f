"""Ray actors: thin async hosts around the core classes in `invispose`."""
