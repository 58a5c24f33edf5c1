"""App-free helpers the apps build on (imported downward only): Redis connections, limits."""
