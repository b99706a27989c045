"""The Ray Serve target: the bundle as a Ray Serve deployment on a single-node Ray cluster
started by its server, reached through Serve's HTTP proxy with the Flask target's API."""
