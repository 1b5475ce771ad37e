"""pypause side by side with tini, dumb-init, catatonit and the Python floor."""
