"""The serving layer: Ray Serve shims, the HTTP ingress, the job store and the one builder."""
